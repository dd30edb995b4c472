import ArgumentParser
import MCLTrain

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "checkpoint", abstract: "Inspect checkpoints.",
                                                    subcommands: [Verify.self, Weights.self])

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

    struct Weights: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a checkpoint's model tensors without the optimizer state (to keep or share trained weights).",
            discussion: "The result is read by evaluate --checkpoint, train --init and detect like the checkpoint itself.")
        @Argument(help: "A checkpoint's .safetensors or .json file.") var file: String
        @Option(help: "The file to write.") var out: String

        func run() throws {
            runGuarded {
                let s = try Checkpoints.exportWeights(from: file, to: out)
                print("\(out): \(s.model.arch) width \(s.model.width) from \(s.weights), without the optimizer state")
                return 0
            }
        }
    }
}
