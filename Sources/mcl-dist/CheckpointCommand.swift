import ArgumentParser
import MCLTrain

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "checkpoint", abstract: "Inspect checkpoints.",
                                                    subcommands: [Verify.self])

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a checkpoint without using it: state, header, every tensor's checksum and shape, finite values.",
            discussion: "FILE is a checkpoint's .safetensors weights or its .json state (which names the weights beside it). Exit 0 when it is intact, 2 with the reason otherwise.")
        @Argument(help: "A checkpoint's .safetensors or .json file.") var file: String

        func run() throws {
            runGuarded {
                print(try Checkpoints.verify(path: file).text)
                return 0
            }
        }
    }
}
