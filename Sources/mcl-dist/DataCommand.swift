import ArgumentParser
import MCLData

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data", abstract: "Prepare and inspect data sets.",
                                                    subcommands: [Prepare.self, Info.self])

    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pack CIFAR binary, IDX (MNIST-style) or image folders into one memory-mappable file.")
        @Argument(help: "Source: CIFAR binary file/folder, IDX images file, or image folder (<class>/<file>, or flat = unlabelled).") var source: String
        @Option(help: "Output file.") var out: String
        @Option(help: "Keep only these classes, relabelled 0..k-1 in this order, e.g. 0,1,2.") var classes: String?
        @Option(help: "Keep the first N images of each class.") var limit: Int?
        @Option(help: "Split for CIFAR/IDX folders or an image folder's subfolder (train or test).") var split: String?

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        }

        func run() throws {
            runGuarded {
                let info = try prepareDataset(source: source, out: out, classes: try classes.map(parseClassList),
                                              limitPerClass: limit, split: split)
                print("wrote \(out)")
                print(info.text)
                return 0
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Counts per class, image shape, per-channel mean and std.")
        @Argument(help: "A packed data set file.") var file: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            runGuarded {
                let info = try datasetInfo(path: file)
                print(json ? info.json() : info.text)
                return 0
            }
        }
    }
}
