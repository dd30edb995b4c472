import Foundation
import ArgumentParser
import MCLCore
import MCLNet
import MCLDistributed
import MCLTrain

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Training-step throughput (forward + backward + SGD) on random 32x32 data.")
    @Option(help: "resnet18 or resnet34.") var model = "resnet18"
    @Option(help: "Images per step.") var batch = 64
    @Option(help: "Encoder width.") var width = 64
    @Option(help: "Threads (default: all cores).") var threads: Int?
    @Option(help: "Timed steps (median reported; with --profile, repeats per pass, best reported).") var steps = 5
    @Option(help: "Untimed warm-up steps.") var warmup = 2
    @Flag(help: "Measure eval-mode inference instead of training.") var inference = false
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Time the contrastive loss of one global batch (MCL, official SPA) instead of the network step; under mpirun it is sharded by rows over the ranks.") var loss = false
    @Option(help: "With --loss: views in the global batch.") var views = 2048
    @Option(help: "With --loss: projection dimension.") var dim = 128
    @Flag(help: "Per-layer profile: forward, backward-data and backward-weights time and GFLOPS of every convolution shape next to the sgemm peak measured in the same run.") var profile = false
    @Flag(help: "With --loss: every rank computes the whole matrix (the loss before sharding), for comparison.") var replicated = false

    func validate() throws {
        guard ModelConfig.architectures[model] != nil else { throw ValidationError("--model must be resnet18 or resnet34") }
        guard batch > 0, steps > 0, width > 0 else { throw ValidationError("--batch, --steps and --width must be positive") }
    }

    func run() throws {
        runGuarded {
            Threads.set(threads ?? Threads.perRank(explicit: nil))
            // Under mpirun: every rank runs batch / ranks images and the gradients are summed
            // across ranks after backward (the data-parallel step without the contrastive loss).
            let comm: MPICommunicator? = MPIRuntime.launchedByMPI ? MPICommunicator() : nil
            let size = comm?.size ?? 1
            guard batch % size == 0 else { throw ValidationError("--batch \(batch) is not divisible by \(size) ranks") }
            if profile {
                let p = try LayerProfile.run(config: ModelConfig(arch: model, width: width), batch: batch, repeats: steps)
                if let comm, !comm.isRoot { return 0 }
                try emit(p, text: p.table)
                return 0
            }
            if loss {
                guard views > 0, dim > 0, views % (2 * size) == 0 else {
                    throw ValidationError("--views \(views) must be a positive multiple of 2 x \(size) ranks")
                }
                let r = LossBenchmark.run(views: views, dim: dim, replicated: replicated, steps: steps,
                                          comm: comm ?? LocalCommunicator())
                if let comm, !comm.isRoot { return 0 }
                try emit(r, text: r.summary)
                return 0
            }
            let reduce: ((UnsafeMutablePointer<Float>, Int) -> Void)? = comm.map { c in { p, n in c.allreduceSum(p, count: n) } }
            let r = try TrainBenchmark.run(config: ModelConfig(arch: model, width: width), batch: batch, steps: steps,
                                           warmup: warmup, inference: inference, ranks: size, allreduce: reduce)
            if let comm, !comm.isRoot { return 0 }
            try emit(r, text: r.summary)
            return 0
        }
    }

    /// Prints `value` as one JSON line with `--json`, else `text`.
    func emit<T: Encodable>(_ value: T, text: String) throws {
        if json {
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(value), as: UTF8.self))
        } else {
            print(text)
        }
    }
}
