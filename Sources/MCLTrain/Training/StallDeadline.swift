import Foundation

/// How long a collective may wait for the other ranks before the watchdog ends the job
/// (`Communicator.watch`). `job.stall_timeout` > 0 fixes it; < 0 turns the watchdog off; 0 (the
/// default) adapts to the job: 10 times the median of the recent step times, at least
/// `trainingFloor`; `startupFloor` before three steps have been timed (first-touch allocations,
/// resume loading) and `evaluationFloor` while evaluating (rank 0 fits the Gaussians and runs SEI
/// alone while the others wait).
public struct StallDeadline {
    public static let startupFloor = 300.0
    public static let trainingFloor = 120.0
    public static let evaluationFloor = 900.0
    public let configured: Double
    private var recent: [Double] = []

    public init(configured: Double) { self.configured = configured }

    private func pick(_ adaptive: Double) -> Double {
        configured > 0 ? configured : configured < 0 ? 0 : adaptive
    }

    public var startup: Double { pick(Self.startupFloor) }
    public var evaluation: Double { pick(Self.evaluationFloor) }

    /// The deadline for the next training step.
    public var training: Double {
        guard recent.count >= 3 else { return pick(Self.startupFloor) }
        let median = recent.sorted()[recent.count / 2]
        return pick(max(Self.trainingFloor, 10 * median))
    }

    /// Records a step's duration (the last 50 are kept).
    public mutating func record(stepSeconds s: Double) {
        recent.append(s)
        if recent.count > 50 { recent.removeFirst() }
    }
}
