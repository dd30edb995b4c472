import XCTest
import Foundation
@testable import MCLCore

/// The golden folder as a whole (its manifest, its files, their kinds and metadata), and the
/// rules of the manifest-driven runner on a folder made here with one defect of each kind.
final class GoldenManifestTests: XCTestCase {
    /// The folder in use (`MCL_GOLDEN_DIR`, else `Tests/golden`): every listed case has a file,
    /// every file is listed, every case belongs to a kind some test checks, and carries the
    /// metadata that test reads. A defective case gets its one `golden <case> FAIL` line here,
    /// since no kind's test would print one for it.
    func testManifestMatchesFolder() throws {
        let set = GoldenSet()
        let listed = try set.manifest()
        XCTAssertFalse(listed.isEmpty, "\(set.manifestPath) lists no case")
        for (name, why) in set.audit() {
            // Cases whose kind is known get their line from that kind's test (which fails them too).
            if Golden.kind(of: name) == nil || !listed.contains(name) { Golden.reportFailure(name, why) }
            XCTFail("\(name): \(why)")
        }
    }

    /// A manifest with a listed-but-missing case, an unlisted file, a case of no known kind, a
    /// case that lacks metadata and a good one: `audit` names the first four and only them, and
    /// `run` fails the missing and the metadata-less case without calling the check.
    func testManifestRulesOnADefectiveFolder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("golden-audit-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ name: String, metadata: [String: String]) throws {
            var w = SafeTensorsWriter()
            w.metadata = metadata
            w.add("x", shape: [2], floats: [1, 2])
            try w.write(to: "\(dir)/\(name).safetensors")
        }
        let full = ["num_main": "3", "num_aux": "4", "dim": "6", "views": "1", "ridge": "1e-6", "view_rotation": "r"]
        try write("sei-good", metadata: full)
        var partial = full
        partial["ridge"] = nil
        try write("sei-noridge", metadata: partial)
        try write("sei-unlisted", metadata: full)
        try write("frobnicate-1", metadata: [:])
        try "sei-good\nsei-noridge\nsei-missing\nfrobnicate-1\n".write(toFile: dir + "/CASES.txt", atomically: true, encoding: .utf8)

        let set = GoldenSet(directory: dir)
        let problems = Dictionary(uniqueKeysWithValues: set.audit().map { ($0.name, $0.why) })
        XCTAssertEqual(Set(problems.keys), ["sei-noridge", "sei-missing", "frobnicate-1", "sei-unlisted"])
        XCTAssertTrue(problems["sei-noridge"]?.contains("ridge") ?? false, "\(problems)")
        XCTAssertTrue(problems["sei-missing"]?.contains("does not exist") ?? false, "\(problems)")
        XCTAssertTrue(problems["frobnicate-1"]?.contains("no test recognises") ?? false, "\(problems)")
        XCTAssertTrue(problems["sei-unlisted"]?.contains("not listed") ?? false, "\(problems)")

        var checked: [String] = [], lines: [String] = []
        let failures = set.run("sei-", report: { lines.append($0) }) { c in checked.append(c.name); return 0 }
        XCTAssertEqual(checked, ["sei-good"])
        // One line per listed case of the kind, in manifest order.
        XCTAssertEqual(lines.map { $0.split(separator: " ").prefix(3).joined(separator: " ") },
                       ["golden sei-good ok", "golden sei-noridge FAIL", "golden sei-missing FAIL"])
        XCTAssertEqual(failures.count, 2, "\(failures)")
        XCTAssertTrue(failures.contains { $0.hasPrefix("sei-noridge:") && $0.contains("lacks metadata ridge") }, "\(failures)")
        XCTAssertTrue(failures.contains { $0.hasPrefix("sei-missing:") }, "\(failures)")

        // A missing manifest fails the whole kind.
        try FileManager.default.removeItem(atPath: dir + "/CASES.txt")
        XCTAssertEqual(set.run("sei-", report: { _ in }) { _ in 0 }.count, 1)
        XCTAssertEqual(set.audit().map(\.name), ["CASES.txt"])
    }

    /// Without MCL_GOLDEN_DIR the tests read the repository's own folder, not ../shared.
    func testDefaultFolderIsInTheRepository() {
        XCTAssertTrue(Golden.repositoryDirectory.hasSuffix("/Tests/golden"), Golden.repositoryDirectory)
        XCTAssertTrue(FileManager.default.fileExists(atPath: Golden.repositoryDirectory + "/CASES.txt"),
                      "no manifest in \(Golden.repositoryDirectory)")
    }
}
