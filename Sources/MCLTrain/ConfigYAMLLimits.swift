import Foundation
import Yams
import MCLCore

/// Limits on a configuration's YAML, checked before it is turned into values (Yams checks none of
/// them): at most 1 MiB of text, flow collections nested at most 64 deep (libyaml's composer
/// recurses per level), no duplicate key in any mapping (the last one would silently win: a
/// duplicated `train:` section once dropped lr and seed), and at most 100,000 nodes after aliases
/// are expanded (a "billion laughs" alias chain of 9 levels expands to gigabytes). Error messages
/// quote at most 200 characters of a value.
enum ConfigYAMLLimits {
    static let maxBytes = 1 << 20
    static let maxFlowDepth = 64
    static let maxNodes = 100_000

    /// At most `limit` characters of a value, for an error message.
    static func quote(_ v: Any, limit: Int = 200) -> String {
        let s = "\(v)"
        return s.count <= limit ? s : String(s.prefix(limit)) + "... (\(s.utf8.count) bytes)"
    }

    static func check(_ text: String, source: String) throws {
        let bytes = text.utf8.count
        guard bytes <= maxBytes else { throw ConfigError("\(source): \(bytes) bytes; a run configuration is at most \(maxBytes) bytes") }
        var depth = 0, deepest = 0
        for b in text.utf8 {
            if b == UInt8(ascii: "[") || b == UInt8(ascii: "{") { depth += 1; deepest = max(deepest, depth) }
            else if (b == UInt8(ascii: "]") || b == UInt8(ascii: "}")) && depth > 0 { depth -= 1 }
        }
        guard deepest <= maxFlowDepth else {
            throw ConfigError("\(source): brackets nested \(deepest) deep; a run configuration nests at most \(maxFlowDepth)")
        }
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw ConfigError("\(source): invalid YAML: \(quote(error, limit: 400))")
        }
        guard let node else { return }
        var visited = 0
        try walk(node, path: "", source: source, visited: &visited)
    }

    /// Visits every node (aliases expanded), stopping as soon as the count passes the limit.
    static func walk(_ node: Node, path: String, source: String, visited: inout Int) throws {
        visited += 1
        if visited > maxNodes {
            throw ConfigError("\(source): more than \(maxNodes) YAML nodes once aliases are expanded (an alias chain?); a run configuration is far smaller")
        }
        switch node {
        case .scalar: return
        case .sequence(let seq):
            for (i, item) in seq.enumerated() { try walk(item, path: "\(path)[\(i)]", source: source, visited: &visited) }
        case .mapping(let map):
            var seen = Set<String>()
            for (key, value) in map {
                let name = key.string ?? quote(key, limit: 60)
                let full = path.isEmpty ? name : path + "." + name
                guard seen.insert(name).inserted else {
                    let line = key.mark.map { " (line \($0.line))" } ?? ""
                    throw ConfigError("\(source): duplicate key '\(quote(full, limit: 100))'\(line): each key may appear once (the later one would silently replace the earlier)")
                }
                try walk(value, path: full, source: source, visited: &visited)
            }
        }
    }
}
