import Foundation
import ArgumentParser
import MCLCore
import MCLDistributed
import MCLTrain

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Write the features of a data set (projection and backbone, with labels) to safetensors, for t-SNE/UMAP in your own tools.")
    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "Checkpoint (.safetensors).") var checkpoint: String
    @Option(help: "Packed data set (.mcld).") var data: String
    @Option(help: "Output .safetensors file.") var out: String
    @Option(help: "Views per image: 1 (as is), 4 (rotations) or 8 (rotations x flip).") var views = 1
    @Option(help: "Threads per rank.") var threads: Int?

    func validate() throws {
        guard [1, 4, 8].contains(views) else { throw ValidationError("--views must be 1, 4 or 8") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        runGuarded {
            let comm = MPICommunicator()
            Threads.set(Threads.perRank(explicit: threads))
            var o = EmbedOptions(configPath: configOptions.config, checkpoint: checkpoint, data: data, out: out)
            o.overrides = configOptions.sets; o.views = views
            if let s = try runEmbedJob(o, comm: comm) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
            return 0
        }
    }
}
