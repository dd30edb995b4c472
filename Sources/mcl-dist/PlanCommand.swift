import Foundation
import ArgumentParser
import MCLTrain

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Estimate time per epoch, time to train, memory per rank and communication share on N ranks.",
        discussion: """
        Per-rank network throughput is measured here (a short `bench` at the rank's batch, up to 512
        views, with --threads threads) unless --views-per-s is given; the global loss is timed at up to 4096
        views and scaled with views^2; collectives follow a ring model with --latency-us and
        --bandwidth (GB/s; default 2.4 = this machine's shared-memory allreduce). See docs/scaling.md.
        """)
    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "Number of ranks (repeatable: --ranks 8 --ranks 32).") var ranks: [Int] = [1]
    @Option(help: "Threads per rank (default: cores / ranks here, for measuring).") var threads: Int?
    @Option(help: "Interconnect bandwidth per rank in GB/s.") var bandwidth = 2.4
    @Option(help: "Per-message latency in microseconds.") var latencyUs = 5.0
    @Option(help: "Skip measuring: network views/s of one rank.") var viewsPerS: Double?
    @Option(help: "Training images (default: the count in data.train, else 50000).") var images: Int?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard !ranks.isEmpty, ranks.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--ranks must be >= 1") }
        guard bandwidth > 0, latencyUs >= 0 else { throw ValidationError("--bandwidth must be > 0 and --latency-us >= 0") }
    }

    func run() throws {
        runGuarded {
            let (cfg, _) = try RunConfig.load(path: configOptions.config, overrides: configOptions.sets)
            let request = PlanRequest(ranks: ranks, threads: threads, bandwidthGBs: bandwidth, latencyUs: latencyUs,
                                      viewsPerSecond: viewsPerS, images: images)
            let results = try Planner.plan(config: cfg, request: request)
            if json {
                let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys, .prettyPrinted]
                print(String(decoding: try enc.encode(results), as: UTF8.self))
            } else {
                print("plan: \(cfg.model.arch) width \(cfg.model.width), batch \(cfg.batchSize) (\(cfg.viewsPerPair * cfg.batchSize) views), \(Planner.datasetImages(cfg, request)) images x \(cfg.rotations) rotations, \(cfg.epochs) epochs, bandwidth \(bandwidth) GB/s, sync_bn \(cfg.syncBN)")
                print("ranks threads  step_s  compute  loss  z_exchng allreduce  bn_sync  comm%  images/s  epoch      total     mem/rank")
                for r in results {
                    print(String(format: "%5d %7d %7.3f %8.3f %5.3f %9.4f %9.4f %8.4f %6.1f %9.1f %9@ %9@ %8.2f GB",
                                 r.ranks, r.threadsPerRank, r.stepSeconds, r.computeSeconds, r.lossSeconds, r.allgatherSeconds,
                                 r.allreduceSeconds, r.syncBNSeconds, 100 * r.communicationShare, r.imagesPerSecond,
                                 formatDuration(r.epochSeconds), formatDuration(r.totalSeconds), r.memoryPerRankGB))
                }
            }
            return 0
        }
    }
}
