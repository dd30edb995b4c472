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
            "cpu-mcl-da.yaml": (.mcl, .official, 2.0, 4),
        ]
        let supervised: [String: (LossKind, Int, Int)] = [
            "cpu-ce.yaml": (.ce, 1, 128), "cpu-ce-rotation.yaml": (.ceRotation, 4, 512), "cpu-ce-simclr.yaml": (.ceSimCLR, 1, 128),
        ]
        let cpu = try yamlFiles().filter { $0.hasPrefix("cpu-") }
        XCTAssertEqual(Set(cpu), Set(expected.keys).union(supervised.keys), "every cpu-* config is checked here")
        // The supervised baselines: the same network, data and evaluation sets, the standard
        // CIFAR recipe (lr 0.1, weight decay 5e-4, 128 images per step), 5 epochs (the budget of
        // the comparison), seed 0.
        for (file, (kind, rotations, batch)) in supervised {
            let (c, _) = try RunConfig.load(path: configDir.appendingPathComponent(file).path)
            XCTAssertEqual(c.model.arch, "resnet18", file)
            XCTAssertEqual(c.model.width, 16, file)
            XCTAssertEqual(c.model.classes, 10, file)
            XCTAssertEqual(c.model.rotationHead, kind == .ceRotation, file)
            XCTAssertTrue(c.syncBN, file)
            XCTAssertEqual(c.loss.kind, kind, file)
            XCTAssertEqual(c.rotations, rotations, file)
            XCTAssertEqual(c.batchSize, batch, file)
            XCTAssertEqual(c.batchSize / c.rotations, 128, "\(file): 128 images per step")
            XCTAssertEqual(c.baseLR, 0.1, accuracy: 1e-12, file)
            XCTAssertEqual(c.weightDecay, 5e-4, accuracy: 1e-12, file)
            XCTAssertEqual(c.epochs, 5, file)
            XCTAssertEqual(c.seed, 0, file)
            XCTAssertEqual(c.augmentRecipe, kind == .ceSimCLR ? .simclr : .cropFlip, file)
            XCTAssertEqual(c.feature, .backbone, "\(file): the projector is not trained by cross-entropy")
            XCTAssertTrue(c.scorers.contains(.msp) && c.scorers.contains(.odin) && c.scorers.contains(.mahalanobis), file)
            XCTAssertTrue(c.dataTrain.hasSuffix("data/cifar10-train-1k.mcld"), "\(file): \(c.dataTrain)")
            XCTAssertTrue(c.dataTest.hasSuffix("data/cifar10-test-2k.mcld"), "\(file): \(c.dataTest)")
            XCTAssertEqual(c.dataOOD.map(\.name), ["tinyimagenet"], file)
        }
        let (da, _) = try RunConfig.load(path: configDir.appendingPathComponent("cpu-mcl-da.yaml").path)
        XCTAssertFalse(da.rotationLabels)
        XCTAssertFalse(da.loss.useAux, "MCL + DA: the rotation does not enter the masks")
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

/// The keys of the supervised baselines: what a configuration must say, and the errors naming the key.
final class BaselineConfigTests: XCTestCase {
    func parse(_ yaml: String) throws -> RunConfig {
        try RunConfig.parse(yaml: (yaml.contains("data:") ? "" : "data: {train: t.mcld}\n") + yaml).0
    }

    func testSupervisedKindsNeedClassesAndTheirRotations() throws {
        XCTAssertThrowsError(try parse("loss: {kind: ce}\ndata: {train: t.mcld, rotations: 1}")) { e in
            XCTAssertTrue("\(e)".contains("model.classes"), "\(e)")
        }
        XCTAssertThrowsError(try parse("model: {classes: 10}\nloss: {kind: ce}\ndata: {train: t.mcld, rotations: 4}")) { e in
            XCTAssertTrue("\(e)".contains("data.rotations") && "\(e)".contains("ce-rotation"), "\(e)")
        }
        XCTAssertThrowsError(try parse("model: {classes: 10}\nloss: {kind: ce-rotation}\ndata: {train: t.mcld, rotations: 1}")) { e in
            XCTAssertTrue("\(e)".contains("data.rotations"), "\(e)")
        }
        XCTAssertThrowsError(try parse("model: {classes: 1}")) { e in XCTAssertTrue("\(e)".contains("model.classes"), "\(e)") }
        XCTAssertThrowsError(try parse("eval: {scorers: [msp, energy]}")) { e in XCTAssertTrue("\(e)".contains("eval.scorers"), "\(e)") }
        XCTAssertThrowsError(try parse("model: {classes: 10}\nloss: {kind: ce-rotation}\ndata: {train: t.mcld, rotations: 4}")) { e in
            XCTAssertTrue("\(e)".contains("eval.feature"), "\(e)")   // the projector is not trained by cross-entropy
        }
        XCTAssertThrowsError(try parse("model: {classes: 10}\nloss: {kind: mcl}")) { e in
            XCTAssertTrue("\(e)".contains("model.classes") && "\(e)".contains("mcl"), "\(e)")
        }
        let c = try parse("model: {classes: 10}\nloss: {kind: ce-rotation}\ndata: {train: t.mcld, rotations: 4}\neval: {scorers: [rotation, msp], feature: backbone}")
        XCTAssertTrue(c.model.rotationHead)
        XCTAssertEqual(c.viewsPerPair, 1)
        XCTAssertEqual(c.augmentRecipe, .cropFlip)
        XCTAssertEqual(c.scorers, [.msp, .rotation])
        // The resolved YAML of a contrastive config does not gain the new keys (its training hash,
        // and so the resume of earlier runs, is unchanged); a supervised one keeps them.
        let mcl = try parse("loss: {kind: mcl}")
        for key in ["classes", "rotation_labels", "rotation_weight", "simclr_weight", "init", "scorers", "augment"] {
            XCTAssertFalse(mcl.yaml().contains(key + ":"), key)
        }
        let back = try RunConfig.parse(yaml: c.yaml()).0
        XCTAssertEqual(back.model.classes, 10)
        XCTAssertEqual(back.loss.kind, .ceRotation)
        XCTAssertEqual(back.scorers, [.msp, .rotation])
    }
}
