import Foundation
import ArgumentParser
import MCLEval

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "metrics", abstract: "AUROC, AUPR-In, AUPR-Out and FPR@95TPR from two score files (one number per line, higher = more in-distribution).")
    @Option(name: .customLong("in"), help: "In-distribution scores.") var inFile: String
    @Option(help: "Out-of-distribution scores.") var ood: String
    @Flag(help: "Print JSON (keys auroc, aupr_in, aupr_out, fpr95; percent).") var json = false

    func run() throws {
        runGuarded {
            let m = oodMetrics(inScores: try readScoreFile(inFile), oodScores: try readScoreFile(ood))
            if json {
                print(String(format: "{\"auroc\": %.10g, \"aupr_in\": %.10g, \"aupr_out\": %.10g, \"fpr95\": %.10g}", m.auroc, m.auprIn, m.auprOut, m.fpr95))
            } else {
                print(String(format: "AUROC %.4f  AUPR-In %.4f  AUPR-Out %.4f  FPR@95TPR %.4f", m.auroc, m.auprIn, m.auprOut, m.fpr95))
            }
            return 0
        }
    }
}
