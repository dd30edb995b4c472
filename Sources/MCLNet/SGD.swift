import Foundation
import MCLCore

/// SGD with momentum, Nesterov and weight decay in PyTorch's form (SPEC 6), over flat buffers:
/// `g <- g + wd p; b <- mu b + g (b = g on the first step); p <- p - lr (g + mu b)`.
public final class SGD: @unchecked Sendable {
    public var momentum: Float
    public var weightDecay: Float
    public var nesterov: Bool
    public let momentumBuffer: FloatBuffer
    /// Number of steps taken; 0 means the momentum buffer is still empty.
    public var steps: Int = 0

    public init(count: Int, momentum: Float = 0.9, weightDecay: Float = 1e-6, nesterov: Bool = true) {
        self.momentum = momentum; self.weightDecay = weightDecay; self.nesterov = nesterov
        momentumBuffer = FloatBuffer(count: count)
    }

    public func step(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, count: Int, lr: Float) {
        precondition(count == momentumBuffer.count)
        let buf = momentumBuffer.ptr
        let mu = momentum, wd = weightDecay, first = steps == 0, nest = nesterov
        Threads.parallelRange(count, minPerThread: 65536) { s, e in
            for i in s..<e {
                let g = grads[i] + wd * params[i]
                let b = first ? g : mu * buf[i] + g
                buf[i] = b
                params[i] -= lr * (nest ? g + mu * b : b)
            }
        }
        steps += 1
    }
}

/// Per-step cosine annealing without warm-up (SPEC 6):
/// `lr_t = eta_min + (lr - eta_min)(1 + cos(pi t / T)) / 2`, `eta_min = 5e-4 lr` by default.
public struct CosineSchedule: Sendable, Codable, Equatable {
    public var baseLR: Double
    public var etaMin: Double
    public var totalSteps: Int

    public init(baseLR: Double, totalSteps: Int, etaMin: Double? = nil) {
        self.baseLR = baseLR; self.totalSteps = max(1, totalSteps); self.etaMin = etaMin ?? 5e-4 * baseLR
    }

    public func lr(at step: Int) -> Double {
        etaMin + (baseLR - etaMin) * (1 + cos(Double.pi * Double(step) / Double(totalSteps))) / 2
    }
}
