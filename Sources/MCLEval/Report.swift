import Foundation
import MCLCore

/// The metrics of one OOD set.
public struct OODEntry: Codable, Sendable, Equatable {
    public var name: String
    public var metrics: OODMetrics
    public init(name: String, metrics: OODMetrics) {
        self.name = name
        self.metrics = metrics
    }
}

/// One row of the SEI table: a way (1, 4, 8 views) and an aggregation ("avg", "max", "wavg",
/// or "none" for 1-way), the in-distribution accuracy (percent) and the metrics per OOD set.
public struct EvalRow: Codable, Sendable, Equatable {
    public var views: Int
    public var aggregation: String
    public var accuracy: Double
    public var ood: [OODEntry]
    /// A post-hoc scorer's row ("msp", "odin T=1000 eps=0.0014", "mahalanobis", "rotation");
    /// nil for the SEI rows.
    public var method: String? = nil
    public init(views: Int, aggregation: String, accuracy: Double, ood: [OODEntry]) {
        self.views = views
        self.aggregation = aggregation
        self.accuracy = accuracy
        self.ood = ood
    }

    /// "1-way", "4-way avg", ...
    public var label: String { method ?? (aggregation == "none" ? "\(views)-way" : "\(views)-way \(aggregation)") }
}

/// The evaluation report, laid out like the paper's Table 6 (rows = SEI way x aggregation;
/// columns = Acc, then AUROC / FPR@95 / AUPR-In / AUPR-Out per OOD set).
/// Written as `report.md` and `report.json` (sorted keys, so the layout is stable).
public struct EvalReport: Codable, Sendable, Equatable {
    public var checkpoint: String
    /// The configuration text (e.g. the YAML the run used), reproduced verbatim.
    public var config: String
    /// In-distribution test set name, e.g. "cifar10".
    public var inDistribution: String
    /// Which features the Gaussians use: "projection" or "backbone".
    public var feature: String
    public var oodSets: [String]
    public var rows: [EvalRow]
    /// Warnings of the Gaussian fit (degenerate classes) and anything else worth reading.
    public var warnings: [String]

    public init(checkpoint: String, config: String, inDistribution: String, feature: String,
                oodSets: [String], rows: [EvalRow], warnings: [String] = []) {
        self.checkpoint = checkpoint
        self.config = config
        self.inDistribution = inDistribution
        self.feature = feature
        self.oodSets = oodSets
        self.rows = rows
        self.warnings = warnings
    }

    enum CodingKeys: String, CodingKey {
        case checkpoint, config, inDistribution = "in_distribution", feature, oodSets = "ood_sets", rows, warnings
    }

    static func fmt(_ x: Double) -> String { x.isFinite ? String(format: "%.2f", x) : "-" }

    /// The Markdown table (Table 6 layout) with a header naming checkpoint, data and features,
    /// and the configuration in a code block.
    public func markdown() -> String {
        var s = "# MCL evaluation\n\n"
        s += "- checkpoint: `\(checkpoint)`\n"
        s += "- in-distribution: \(inDistribution); features: \(feature)\n"
        s += "- OOD sets: \(oodSets.joined(separator: ", "))\n"
        s += "- metrics in percent; in-distribution positive; score = -(aggregated Mahalanobis distance)\n\n"
        var head = "| SEI | Aggregation | Acc ↑ |"
        var rule = "|---|---|---:|"
        for set in oodSets {
            head += " \(set) AUROC ↑ | \(set) FPR@95 ↓ | \(set) AUPR-In ↑ | \(set) AUPR-Out ↑ |"
            rule += "---:|---:|---:|---:|"
        }
        s += head + "\n" + rule + "\n"
        let methods = rows.filter { $0.method != nil }
        func metricCells(_ row: EvalRow) -> String {
            var line = ""
            for set in oodSets {
                if let m = row.ood.first(where: { $0.name == set })?.metrics {
                    line += " \(Self.fmt(m.auroc)) | \(Self.fmt(m.fpr95)) | \(Self.fmt(m.auprIn)) | \(Self.fmt(m.auprOut)) |"
                } else {
                    line += " - | - | - | - |"
                }
            }
            return line
        }
        for row in rows where row.method == nil {
            s += "| \(row.views)-way | \(row.aggregation == "none" ? "-" : row.aggregation) | \(Self.fmt(row.accuracy)) |" + metricCells(row) + "\n"
        }
        if !methods.isEmpty {
            s += "\n## Post-hoc scorers\n\nScore higher = in-distribution; accuracy of the scorer's own prediction (the classifier's arg max; Mahalanobis: the nearest class mean).\n\n"
            s += "| Scorer | Acc ↑ |" + head.dropFirst("| SEI | Aggregation | Acc ↑ |".count) + "\n"
            s += "|---|---:|" + rule.dropFirst("|---|---|---:|".count) + "\n"
            for row in methods { s += "| \(row.method!) | \(Self.fmt(row.accuracy)) |" + metricCells(row) + "\n" }
        }
        if !warnings.isEmpty {
            s += "\n## Warnings\n\n" + warnings.map { "- \($0)\n" }.joined()
        }
        s += "\n## Configuration\n\n```yaml\n" + config + (config.hasSuffix("\n") || config.isEmpty ? "" : "\n") + "```\n"
        return s
    }

    /// JSON with sorted keys, pretty-printed; non-finite numbers as the strings "nan", "inf", "-inf".
    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try e.encode(self)
    }

    public static func decode(json: Data) throws -> EvalReport {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try d.decode(EvalReport.self, from: json)
    }

    /// Writes `report.md` and `report.json` into `directory` (created if needed), each atomically.
    public func write(directory: String) throws {
        try AtomicFile.makeFolder(directory, for: "report folder")
        try AtomicFile.write(Data(markdown().utf8), to: directory + "/report.md")
        try AtomicFile.write(jsonData(), to: directory + "/report.json")
    }
}
