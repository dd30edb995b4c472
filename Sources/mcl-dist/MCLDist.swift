import Foundation
import ArgumentParser
import MCLDistributed

let mclVersion = "0.1.0"

/// The command-line tool: one subcommand per file, each parsing and validating its options and
/// then making one call into the libraries.
@main
struct MCLDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcl-dist",
        abstract: "Masked Contrastive Learning for OOD detection, data-parallel over MPI.",
        discussion: """
        Typical use:
          mcl-dist data prepare data/cifar10/train --out data/cifar10-train.mcld
          mpirun -np 8 mcl-dist train --config configs/paper-resnet34.yaml --out runs/r34
          mcl-dist evaluate --config configs/paper-resnet34.yaml --checkpoint runs/r34/checkpoints/step-00400000.safetensors --out runs/r34/eval
        """,
        version: mclVersion,
        subcommands: [InfoCommand.self, TrainCommand.self, EvaluateCommand.self, DetectCommand.self, EmbedCommand.self, DataCommand.self, CheckpointCommand.self, MetricsCommand.self,
                      BenchCommand.self, PlanCommand.self, PlotLossCommand.self])
}

/// Runs a command body; any error ends the whole job: a clear message naming the rank, then
/// MPI_Abort when other ranks exist (so none is left waiting in a collective), exit 2 otherwise.
func runGuarded(_ body: () throws -> Int32) -> Never {
    do {
        let code = try body()
        MPIRuntime.finalize()
        exit(code)
    } catch {
        if MPIRuntime.isInitialised, MPICommunicator().size > 1 {
            MPIRuntime.abort("error: \(error)", code: 2)
        }
        FileHandle.standardError.write(Data("mcl-dist: error: \(error)\n".utf8))
        exit(2)
    }
}

/// `--config FILE` and `--set key=value` overrides, shared by the commands that read a run
/// configuration.
struct ConfigOptions: ParsableArguments {
    @Option(help: "YAML run configuration.") var config: String
    @Option(name: .customLong("set"), help: "Override a config key, e.g. --set train.epochs=5 (repeatable).") var sets: [String] = []

    func validate() throws {
        guard FileManager.default.fileExists(atPath: config) else { throw ValidationError("--config \(config): no such file") }
    }
}

/// The rank-0 log line printer.
func rootLog(_ rank: Int) -> (String) -> Void {
    { if rank == 0 { print($0); fflush(nil) } }
}
