import XCTest
import Foundation
@testable import MCLEval

final class ReportTests: XCTestCase {
    static func sample() -> EvalReport {
        let m1 = OODMetrics(auroc: 93.2, auprIn: 93.83, auprOut: 91.73, fpr95: 38.24)
        let m2 = OODMetrics(auroc: 90.5, auprIn: 91.0, auprOut: .nan, fpr95: 45.0)
        return EvalReport(checkpoint: "runs/a/ckpt.safetensors", config: "model: resnet34\nfeature: projection",
                          inDistribution: "cifar10", feature: "projection", oodSets: ["tinyimagenet", "fmnist"],
                          rows: [EvalRow(views: 1, aggregation: "none", accuracy: 94.03, ood: [OODEntry(name: "tinyimagenet", metrics: m1), OODEntry(name: "fmnist", metrics: m2)]),
                                 EvalRow(views: 4, aggregation: "avg", accuracy: 94.68, ood: [OODEntry(name: "tinyimagenet", metrics: m1)])],
                          warnings: ["class 3 rotation 1: something"])
    }

    func testMarkdownLayout() {
        let md = Self.sample().markdown()
        print(md)
        XCTAssertTrue(md.contains("| SEI | Aggregation | Acc ↑ | tinyimagenet AUROC ↑ | tinyimagenet FPR@95 ↓ | tinyimagenet AUPR-In ↑ | tinyimagenet AUPR-Out ↑ | fmnist AUROC ↑"))
        XCTAssertTrue(md.contains("| 1-way | - | 94.03 | 93.20 | 38.24 | 93.83 | 91.73 | 90.50 | 45.00 | 91.00 | - |"))
        XCTAssertTrue(md.contains("| 4-way | avg | 94.68 | 93.20 | 38.24 | 93.83 | 91.73 | - | - | - | - |"))
        XCTAssertTrue(md.contains("```yaml\nmodel: resnet34\nfeature: projection\n```"))
        XCTAssertTrue(md.contains("runs/a/ckpt.safetensors"))
    }

    func testJSONStableKeysAndRoundTrip() throws {
        let r = Self.sample()
        let data = try r.jsonData()
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(text.contains("\"aupr_out\" : \"nan\""))
        // Keys sorted: accuracy < aggregation < ood < views inside a row.
        let a = text.range(of: "\"accuracy\"")!.lowerBound, b = text.range(of: "\"aggregation\"")!.lowerBound
        let v = text.range(of: "\"views\"")!.lowerBound
        XCTAssertTrue(a < b && b < v)
        let back = try EvalReport.decode(json: data)
        XCTAssertEqual(back.rows[1], r.rows[1])
        XCTAssertTrue(back.rows[0].ood[1].metrics.auprOut.isNaN)
        XCTAssertEqual(try back.jsonData(), data)  // stable
        let dir = NSTemporaryDirectory() + "mcl-eval-report-\(getpid())"
        try r.write(directory: dir)
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/report.json"), data)
        XCTAssertEqual(String(decoding: FileManager.default.contents(atPath: dir + "/report.md")!, as: UTF8.self), r.markdown())
        try? FileManager.default.removeItem(atPath: dir)
    }
}
