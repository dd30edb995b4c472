import Foundation
import MCLCore

/// Score files: one score per line, higher = more in-distribution. `evaluate` writes them,
/// `metrics` and the tests read them; this is the only reader and writer.

/// Writes one score per line in Swift's shortest round-trip decimal form (so reading the file
/// back gives the same doubles bit for bit), atomically.
public func writeScoreFile(_ scores: [Double], to path: String) throws {
    var s = ""
    s.reserveCapacity(scores.count * 22)
    for x in scores { s += "\(x)\n" }
    try AtomicFile.write(Data(s.utf8), to: path)
}

/// Reads a score file: one number per line (LF or CRLF); blank lines and lines starting with '#'
/// are skipped; -inf/inf are allowed (a distance can overflow), NaN is not (it has no order).
/// Errors name the file and the line; an empty file is an error.
public func readScoreFile(_ path: String) throws -> [Double] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw EvalError("\(path): cannot read the score file")
    }
    var out: [Double] = []
    // Split on every line break: "\r\n" is one Character in Swift, so splitting on "\n" alone
    // would leave a CRLF file as one line.
    for (k, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
        let t = line.trimmingCharacters(in: .whitespacesAndNewlines)
        if t.isEmpty || t.hasPrefix("#") { continue }
        // Only the characters of a number: Double("2\u{0}7") would read 2 and ignore the rest.
        let numeric = t.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "+-.".unicodeScalars.contains($0)) }
        guard numeric, let v = Double(t), !v.isNaN else {
            let shown = String(t.prefix(40).unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f ? Character($0) : "?" })
            throw EvalError("\(path): line \(k + 1): '\(shown)' is not a number")
        }
        out.append(v)
    }
    if out.isEmpty { throw EvalError("\(path): no scores") }
    return out
}
