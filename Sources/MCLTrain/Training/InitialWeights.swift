import Foundation
import MCLCore
import MCLNet

/// `train.init` (`mcl-dist train --init CKPT`): start a run from another run's encoder, for the
/// fine-tuning rows of the paper's Table 3 (a SimCLR or MCL encoder fine-tuned with cross-entropy,
/// or jointly with cross-entropy + SimCLR).
///
/// Every encoder tensor (`enc.*`: weights and BatchNorm running statistics) is read from the
/// checkpoint, and the projector's (`projector.*`) too when the new objective uses it; the heads
/// (classifier, rotation head) keep their fresh initialisation, and no optimizer state is read.
/// A tensor that is missing or has another shape (another architecture or width) fails naming
/// the tensor and the file, before anything is trained or written.
public enum InitialWeights {
    /// Loads the tensors into `model`; returns how many were read.
    @discardableResult
    public static func load(_ path: String, into model: ResNetModel, projector: Bool) throws -> Int {
        let f: SafeTensorsFile
        do { f = try SafeTensorsFile(path: path) } catch { throw ConfigError("train.init: \(error)") }
        let store = model.store
        func wanted(_ name: String) -> Bool { name.hasPrefix("enc.") || (projector && name.hasPrefix("projector.")) }
        let m = model.config
        var count = 0
        for (infos, base) in [(store.params, store.values.ptr), (store.stats, store.state.ptr)] {
            for p in infos where wanted(p.name) {
                guard f.has(p.name), let shape = try? f.shape(p.name) else {
                    throw ConfigError("train.init: \(path) has no tensor '\(p.name)', which model \(m.arch) width \(m.width) needs (is it an mcl-dist checkpoint of this architecture?)")
                }
                guard shape == p.shape else {
                    throw ConfigError("train.init: tensor '\(p.name)' of \(path) has shape \(shape), model \(m.arch) width \(m.width) needs \(p.shape): the checkpoint is of another architecture or width")
                }
                do { try f.read(p.name, shape: p.shape, into: base + p.offset) } catch { throw ConfigError("train.init: \(error)") }
                guard allFinite(base + p.offset, p.count) else {
                    throw ConfigError("train.init: tensor '\(p.name)' of \(path) holds NaN or infinity")
                }
                count += 1
            }
        }
        return count
    }
}
