import Foundation
import Yams
import MCLCore

/// Comparing two run configurations, to decide whether a run may be continued with another.
///
/// A run is continued (`--resume`) only with a configuration whose *trajectory keys* are those it
/// was trained with: everything that changes what one step computes (model, data, loss, batch,
/// learning rate, seed, optimizer, BatchNorm mode...). The *continuation keys* may differ: how
/// long it trains (`train.epochs`, `train.max_steps`: extending a run, as llm.c and torchtitan
/// users do; the cosine schedule is then recomputed over the new total), how often and how many
/// checkpoints it keeps, what it is evaluated on (`data.test`, `data.ood`, `eval.*`) and job
/// control (`job.*`).
extension RunConfig {
    /// Keys that may change between a run and its continuation.
    public static func isContinuationKey(_ key: String) -> Bool {
        key.hasPrefix("eval.") || key.hasPrefix("job.") ||
            ["train.epochs", "train.max_steps", "train.checkpoint_every", "train.keep_checkpoints", "data.test", "data.ood",
             // The weights a run started from: a continued run reads its own checkpoint instead.
             "train.init"].contains(key)
    }

    /// Every key (`section.key`) with its value as text, from the resolved YAML.
    public var flatValues: [String: String] { RunConfig.flatten(yaml: yaml()) }

    /// The keys and values of a resolved configuration's YAML (`config.yaml`, or the copy in a
    /// checkpoint's state); empty when the text does not parse.
    public static func flatten(yaml text: String) -> [String: String] {
        guard let root = (try? Yams.load(yaml: text)) as? [String: Any] else { return [:] }
        var out: [String: String] = [:]
        for (section, value) in root {
            guard let m = value as? [String: Any] else { continue }
            for (k, v) in m { out["\(section).\(k)"] = render(v) }
        }
        return out
    }

    static func render(_ v: Any) -> String {
        if let m = v as? [String: Any] { return "{" + m.keys.sorted().map { "\($0): \(render(m[$0]!))" }.joined(separator: ", ") + "}" }
        if let a = v as? [Any] { return "[" + a.map(render).joined(separator: ", ") + "]" }
        if v is NSNull { return "null" }
        return "\(v)"
    }

    /// A difference between two configurations.
    public struct Change: Sendable, CustomStringConvertible {
        public let key: String
        public let old: String
        public let new: String
        public var description: String { "\(key): \(old) -> \(new)" }
    }

    /// The keys whose values differ (a key missing on one side shows as "(absent)"), sorted.
    public static func changes(from old: [String: String], to new: [String: String]) -> [Change] {
        Set(old.keys).union(new.keys).sorted().compactMap { k in
            let a = old[k] ?? "(absent)", b = new[k] ?? "(absent)"
            return a == b ? nil : Change(key: k, old: a, new: b)
        }
    }

    /// A hash of the trajectory keys (FNV-1a 64, hex): equal for two configurations a checkpoint
    /// of one may be continued with by the other.
    public var trainingHash: String {
        let flat = flatValues
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for k in flat.keys.sorted() where !RunConfig.isContinuationKey(k) {
            for b in "\(k)=\(flat[k]!)\n".utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        return String(format: "%016llx", h)
    }
}
