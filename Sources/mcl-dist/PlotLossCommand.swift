import ArgumentParser
import MCLCore
import MCLTrain

struct PlotLossCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plot-loss", abstract: "Draw a run's loss curve (PNG) from its metrics.jsonl.")
    @Argument(help: "metrics.jsonl of a run.") var metrics: String
    @Option(help: "Output PNG.") var out: String
    @Option(help: "Figure title.") var title = "training loss"

    func run() throws {
        runGuarded {
            guard try writeLossFigure(metricsPath: metrics, out: out, title: title) else {
                throw ConfigError("\(metrics): no readable step lines (expected metrics.jsonl from `mcl-dist train`)")
            }
            print("wrote \(out)")
            return 0
        }
    }
}
