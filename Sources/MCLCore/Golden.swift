import Foundation

/// One kind of golden case: the file-name prefix, the test that checks it, and the metadata
/// fields that test reads (a function of the case's metadata, because e.g. a loss case needs
/// `spa` only when its `kind` samples SPA targets).
public struct GoldenKind: Sendable {
    public let prefix: String
    public let checkedBy: String
    public let requiredMetadata: @Sendable ([String: String]) -> [String]

    public init(prefix: String, checkedBy: String, requiredMetadata: @escaping @Sendable ([String: String]) -> [String]) {
        self.prefix = prefix; self.checkedBy = checkedBy; self.requiredMetadata = requiredMetadata
    }

    /// The fields `checkedBy` reads that a case's metadata lacks.
    public func missingMetadata(_ metadata: [String: String]) -> [String] {
        requiredMetadata(metadata).filter { metadata[$0] == nil }
    }
}

/// A golden case whose outputs disagree with ours; the message says which output and by how much.
public typealias GoldenMismatch = MCLError

/// The golden reference cases (PyTorch / scikit-learn vectors; `Tests/reference/make_golden.py`
/// writes them, `Tests/golden/README.md` lists the fields).
///
/// A golden folder holds `CASES.txt` (the manifest: one case name per line) and one
/// `<case>.safetensors` per case. Every listed case must exist, every file must be listed, every
/// case must belong to a kind below, and must carry the metadata its test reads: no default
/// stands in for a missing field. Each case prints exactly one line,
/// `golden <case> ok <max rel err>` or `golden <case> FAIL <why>`.
public enum Golden {
    /// The in-repository folder (`Tests/golden`, next to the generator in `Tests/reference`),
    /// located from this source file so it does not depend on the working directory.
    public static var repositoryDirectory: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tests/golden").path
    }

    /// `MCL_GOLDEN_DIR` if set, else the in-repository folder.
    public static var directory: String {
        if let d = ProcessInfo.processInfo.environment["MCL_GOLDEN_DIR"], !d.isEmpty { return d }
        return repositoryDirectory
    }

    /// Every kind of case and the test that checks it. A case whose name starts with none of these
    /// prefixes is a case no test recognises, and fails.
    public static let kinds: [GoldenKind] = [
        GoldenKind(prefix: "loss-", checkedBy: "GoldenLossTests") { md in
            var keys = ["kind", "tau", "floor", "use_aux", "views", "dim", "num_main", "num_aux"]
            let kind = md["kind"] ?? ""
            if ["ccm", "spa", "mcl"].contains(kind) { keys += ["alpha", "beta"] }
            if ["spa", "mcl"].contains(kind) { keys.append("spa") }
            if kind == "mcl" { keys.append("spa_weight") }
            return keys
        },
        GoldenKind(prefix: "model-", checkedBy: "GoldenModelTests") { _ in
            ["arch", "width", "projector_hidden", "projection_dim", "batch", "bn_momentum", "bn_eps"]
        },
        GoldenKind(prefix: "optim-", checkedBy: "GoldenModelTests") { _ in
            ["momentum", "nesterov", "weight_decay", "base_lr", "eta_min", "total_steps"]
        },
        GoldenKind(prefix: "metrics-", checkedBy: "GoldenEvalTests") { _ in ["higher_is_in_distribution", "percent"] },
        GoldenKind(prefix: "sei-", checkedBy: "GoldenEvalTests") { _ in ["num_main", "num_aux", "dim", "views", "ridge", "view_rotation"] },
        GoldenKind(prefix: "augment-", checkedBy: "AugmentGoldenTests") { _ in ["brightness", "contrast", "saturation", "hue", "crop"] },
        GoldenKind(prefix: "odin-", checkedBy: "GoldenODINTests") { _ in
            ["arch", "width", "projector_hidden", "projection_dim", "batch", "bn_eps", "classes", "temperature", "epsilon"]
        },
        GoldenKind(prefix: "supervised-", checkedBy: "GoldenSupervisedTests") { md in
            switch md["kind"] ?? "" {
            case "ce-rotation": return ["kind", "views", "classes", "rotation_weight"]
            case "ce-simclr": return ["kind", "views", "classes", "simclr_weight", "tau", "floor", "dim"]
            default: return ["kind", "views", "classes"]
            }
        },
    ]

    /// The kind a case name belongs to, if any.
    public static func kind(of name: String) -> GoldenKind? {
        kinds.first { name.hasPrefix($0.prefix) }
    }

    /// A case's ok line.
    public static func okLine(_ name: String, maxRelErr: Double) -> String {
        "golden \(name) ok \(String(format: "%.3e", maxRelErr))"
    }

    /// A case's failure line.
    public static func failLine(_ name: String, _ why: String) -> String {
        "golden \(name) FAIL \(why)"
    }

    public static func reportFailure(_ name: String, _ why: String) { print(failLine(name, why)) }
}

/// One golden case: its file, with metadata accessors that fail on a missing field.
public struct GoldenCase: Sendable {
    public let name: String
    public let file: SafeTensorsFile

    public func string(_ key: String) throws -> String {
        guard let s = file.metadata[key] else { throw GoldenMismatch("metadata '\(key)' missing") }
        return s
    }

    public func double(_ key: String) throws -> Double {
        let s = try string(key)
        guard let v = Double(s) else { throw GoldenMismatch("metadata \(key) = '\(s)' is not a number") }
        return v
    }

    public func int(_ key: String) throws -> Int {
        let s = try string(key)
        guard let v = Int(s) else { throw GoldenMismatch("metadata \(key) = '\(s)' is not an integer") }
        return v
    }

    public func bool(_ key: String) throws -> Bool {
        switch try string(key) {
        case "true", "True", "1": return true
        case "false", "False", "0": return false
        case let s: throw GoldenMismatch("metadata \(key) = '\(s)' is not a boolean")
        }
    }
}

/// A golden folder and its manifest.
public struct GoldenSet: Sendable {
    public let directory: String

    public init(directory: String = Golden.directory) { self.directory = directory }

    public var manifestPath: String { directory + "/CASES.txt" }

    /// The manifest's case names in file order (blank lines and `#` comments skipped).
    public func manifest() throws -> [String] {
        guard let text = try? String(contentsOfFile: manifestPath, encoding: .utf8) else {
            throw GoldenMismatch("no manifest \(manifestPath)")
        }
        return text.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// Case files present in the folder (names without `.safetensors`), sorted.
    public func files() -> [String] {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return all.filter { $0.hasSuffix(".safetensors") }.map { String($0.dropLast(".safetensors".count)) }.sorted()
    }

    /// The manifest's cases of one kind.
    public func cases(_ prefix: String) throws -> [String] {
        try manifest().filter { $0.hasPrefix(prefix) }
    }

    public func open(_ name: String) throws -> GoldenCase {
        let path = directory + "/" + name + ".safetensors"
        guard FileManager.default.fileExists(atPath: path) else {
            throw GoldenMismatch("listed in \(manifestPath) but \(path) does not exist")
        }
        return GoldenCase(name: name, file: try SafeTensorsFile(path: path))
    }

    /// What is wrong with the folder as a whole, one entry per case: (case, why). Listed cases
    /// without a file, files not listed, cases no test recognises, duplicate listings, and
    /// missing metadata.
    public func audit() -> [(name: String, why: String)] {
        let listed: [String]
        do { listed = try manifest() } catch { return [("CASES.txt", "\(error)")] }
        var problems: [(String, String)] = []
        var seen = Set<String>()
        for name in listed {
            if !seen.insert(name).inserted { problems.append((name, "listed twice in \(manifestPath)")); continue }
            guard let kind = Golden.kind(of: name) else {
                problems.append((name, "no test recognises this case (known prefixes: \(Golden.kinds.map(\.prefix).joined(separator: " ")))"))
                continue
            }
            do {
                let c = try open(name)
                let missing = kind.missingMetadata(c.file.metadata)
                if !missing.isEmpty {
                    problems.append((name, "lacks metadata \(missing.joined(separator: ", ")) that \(kind.checkedBy) needs"))
                }
            } catch {
                problems.append((name, "\(error)"))
            }
        }
        for name in files() where !seen.contains(name) {
            problems.append((name, "\(directory)/\(name).safetensors is not listed in \(manifestPath)"))
        }
        return problems
    }

    /// Runs `check` on every listed case of a kind and prints one line per case. `check` returns
    /// the case's largest relative error or throws `GoldenMismatch` (or any error) naming the
    /// output that disagrees. A missing file or a missing metadata field fails the case before
    /// `check` runs. Each line goes to `report` (standard output by default). Returns the failed
    /// cases with their reasons.
    @discardableResult
    public func run(_ prefix: String, report: (String) -> Void = { print($0) },
                    check: (GoldenCase) throws -> Double) -> [String] {
        guard let kind = Golden.kinds.first(where: { $0.prefix == prefix }) else {
            return ["no golden kind '\(prefix)'"]
        }
        let names: [String]
        do { names = try cases(prefix) } catch {
            report(Golden.failLine("\(prefix)*", "\(error)"))
            return ["\(prefix)*: \(error)"]
        }
        if names.isEmpty {
            report(Golden.failLine("\(prefix)*", "no \(prefix)* case listed in \(manifestPath)"))
            return ["\(prefix)*: none listed"]
        }
        var failures: [String] = []
        for name in names {
            do {
                let c = try open(name)
                let missing = kind.missingMetadata(c.file.metadata)
                if !missing.isEmpty { throw GoldenMismatch("lacks metadata \(missing.joined(separator: ", "))") }
                let err = try check(c)
                guard err.isFinite else { throw GoldenMismatch("non-finite error \(err)") }
                report(Golden.okLine(name, maxRelErr: err))
            } catch {
                report(Golden.failLine(name, "\(error)"))
                failures.append("\(name): \(error)")
            }
        }
        return failures
    }
}
