import Foundation
import ArgumentParser
import MCLCore
import MCLDistributed
import MCLTrain

struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "evaluate", abstract: "Fit class x rotation Gaussians and score with Self-Ensemble Inference.")
    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "Checkpoint (.safetensors) to evaluate.") var checkpoint: String
    @Option(help: "Output directory for report.md, report.json and figures.") var out: String
    @Option(help: "Training set (overrides data.train).") var train: String?
    @Option(help: "In-distribution test set (overrides data.test).") var test: String?
    @Option(help: "OOD set NAME=PATH (repeatable; replaces data.ood).") var ood: [String] = []
    @Option(help: "Threads per rank.") var threads: Int?

    func validate() throws {
        for o in ood where !o.contains("=") { throw ValidationError("--ood \(o): expected NAME=PATH") }
        guard FileManager.default.fileExists(atPath: checkpoint) else { throw ValidationError("--checkpoint \(checkpoint): no such file") }
    }

    func run() throws {
        runGuarded {
            let comm = MPICommunicator()
            Threads.set(Threads.perRank(explicit: threads))
            var opts = EvaluateOptions(configPath: configOptions.config, checkpoint: checkpoint, outDir: out)
            opts.overrides = configOptions.sets + (train.map { ["data.train=\($0)"] } ?? []) + (test.map { ["data.test=\($0)"] } ?? [])
            opts.ood = ood.map { o in let i = o.firstIndex(of: "=")!; return (String(o[..<i]), String(o[o.index(after: i)...])) }
            if let report = try runEvaluateJob(opts, comm: comm, log: rootLog(comm.rank)) { print(report.markdown()) }
            return 0
        }
    }
}
