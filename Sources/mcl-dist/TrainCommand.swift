import ArgumentParser
import MCLDistributed
import MCLTrain

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train", abstract: "Train with MCL (run under mpirun or srun for several ranks).")
    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "Output directory (default runs/<config name>).") var out: String?
    @Option(help: "auto (newest valid checkpoint in OUT/checkpoints) or a checkpoint path.") var resume: String?
    @Flag(help: "Start over in an --out folder that holds an earlier run; that run is moved to OUT/superseded-<time>/, never deleted.") var fresh = false
    @Option(help: "Threads per rank (default: cores / ranks on the node).") var threads: Int?
    @Option(help: ArgumentHelp("Start from this checkpoint's encoder (and projector, for ce-simclr); the heads start fresh. Same as --set train.init=CKPT.", valueName: "CKPT")) var `init`: String?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if fresh && resume != nil { throw ValidationError("--fresh and --resume exclude each other") }
        if let i = `init`, i.isEmpty { throw ValidationError("--init needs a checkpoint path") }
    }

    func run() throws {
        runGuarded {
            var opts = TrainOptions(configPath: configOptions.config)
            opts.overrides = configOptions.sets + (`init`.map { ["train.init=\($0)"] } ?? [])
            opts.outDir = out; opts.resume = resume; opts.fresh = fresh; opts.threads = threads
            return try TrainJob(options: opts, comm: MPICommunicator()).run().rawValue
        }
    }
}
