import XCTest
import MCLObjective
@testable import MCLTrain

/// The shipped `configs/*.yaml` parse, and the CPU-scale ones keep the budget docs/results.md
/// reports (issue 8): a config edit that would silently change those numbers fails here.
final class ConfigFilesTests: XCTestCase {
    private var configDir: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("configs")
    }

    private func yamlFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: configDir.path).filter { $0.hasSuffix(".yaml") }.sorted()
    }

    func testEveryShippedConfigParses() throws {
        let files = try yamlFiles()
        XCTAssertGreaterThanOrEqual(files.count, 10, "configs/ should hold the paper, ablation, CPU and quickstart configs")
        for f in files {
            XCTAssertNoThrow(try RunConfig.load(path: configDir.appendingPathComponent(f).path), f)
        }
    }

    func testCPUConfigsKeepTheResultsBudget() throws {
        let expected: [String: (LossKind, SPAMode, Double, Int)] = [
            "cpu-mcl.yaml": (.mcl, .official, 2.0, 4),
            "cpu-mcl-paper.yaml": (.mcl, .paperSample, 2.5, 4),
            "cpu-mcl-spa-expectation.yaml": (.mcl, .paperExpectation, 2.5, 4),
            "cpu-mcl-no-spa.yaml": (.ccm, .official, 2.0, 4),
            "cpu-mcl-no-aux.yaml": (.mcl, .official, 2.0, 1),
            "cpu-supcon.yaml": (.supcon, .official, 2.0, 4),
            "cpu-simclr.yaml": (.simclr, .official, 2.0, 4),
        ]
        let cpu = try yamlFiles().filter { $0.hasPrefix("cpu-") }
        XCTAssertEqual(Set(cpu), Set(expected.keys), "every cpu-* config is checked here")
        for (file, (kind, spa, beta, rotations)) in expected {
            let (c, _) = try RunConfig.load(path: configDir.appendingPathComponent(file).path)
            XCTAssertEqual(c.model.arch, "resnet18", file)
            XCTAssertEqual(c.model.width, 16, file)
            XCTAssertEqual(c.model.projectorHidden, 512, file)
            XCTAssertEqual(c.model.projectionDim, 128, file)
            XCTAssertTrue(c.syncBN, "\(file): global BatchNorm (docs/results.md)")
            XCTAssertEqual(c.batchSize, 256, file)
            XCTAssertEqual(c.baseLR, 0.3, accuracy: 1e-12, file)
            XCTAssertEqual(c.epochs, 15, file)
            XCTAssertEqual(c.seed, 0, file)
            XCTAssertEqual(c.rotations, rotations, file)
            XCTAssertEqual(c.loss.kind, kind, file)
            if kind == .mcl { XCTAssertEqual(c.loss.spa, spa, file) }
            XCTAssertEqual(c.loss.tau, 0.2, accuracy: 1e-12, file)
            XCTAssertEqual(c.loss.alpha, 0.05, accuracy: 1e-12, file)
            XCTAssertEqual(c.loss.beta, beta, accuracy: 1e-12, file)
            XCTAssertTrue(c.dataTrain.hasSuffix("data/cifar10-train-1k.mcld"), "\(file): \(c.dataTrain)")
            XCTAssertTrue(c.dataTest.hasSuffix("data/cifar10-test-2k.mcld"), "\(file): \(c.dataTest)")
            XCTAssertEqual(c.dataOOD.map(\.name), ["tinyimagenet"], file)
            XCTAssertTrue(c.dataOOD.first?.path.hasSuffix("data/tinyimagenet32-test-2k.mcld") ?? false, file)
        }
    }
}

final class ResolvedYAMLTests: XCTestCase {
    /// The resolved config.yaml parses back to the same configuration, also when paths hold
    /// YAML syntax (": ", "#", a leading "&" or quotes) or are empty.
    func testResolvedYAMLRoundTripsAwkwardPaths() throws {
        let text = """
        data:
          train: "runs/a: b #1/train.mcld"
          test: ""
          ood: {"odd: name": "&x/'q'.mcld", plain: ood.mcld}
        """
        let (c, yaml) = try RunConfig.parse(yaml: text)
        XCTAssertEqual(c.dataTrain, "runs/a: b #1/train.mcld")
        let (again, yaml2) = try RunConfig.parse(yaml: yaml)
        XCTAssertEqual(again.dataTrain, c.dataTrain)
        XCTAssertEqual(again.dataTest, "")
        XCTAssertEqual(again.dataOOD.map(\.name), c.dataOOD.map(\.name))
        XCTAssertEqual(again.dataOOD.map(\.path), c.dataOOD.map(\.path))
        XCTAssertEqual(yaml2, yaml)
        XCTAssertEqual(again.trainingHash, c.trainingHash)
    }
}
