/// The contrastive objective to minimise (SPEC 3).
///
/// All objectives are means over the 2N views of the global batch, computed from the cosine
/// similarities `sim_ik = u_i . u_k` of the normalised projections `u_i = z_i / max(|z_i|, 1e-12)`.
public enum LossKind: String, Sendable, CaseIterable {
    /// SimCLR NT-Xent: `l(i) = -log softmax_{k != i}(sim_ik / tau)[partner(i)]`.
    case simclr
    /// Supervised contrastive loss L_out (Khosla et al.) with positives `P(i) = {k != i : y_k = y_i}`.
    case supcon
    /// Class-conditional mask (paper eq. 4-6): NT-Xent with logits `sim_ik * M(i,k)`.
    case ccm
    /// Stochastic positive attraction alone (unweighted; `spaWeight` is not applied).
    case spa
    /// Masked contrastive learning: `CCM + lambda * SPA`.
    case mcl
    /// Supervised softmax cross-entropy on a linear classifier (the baseline; `SupervisedRows`).
    case ce
    /// Cross-entropy plus a 4-way rotation head (Hendrycks et al. 2019, auxiliary rotation).
    case ceRotation = "ce-rotation"
    /// Joint fine-tuning: cross-entropy plus `simclrWeight` x SimCLR (the paper's eq. 36).
    case ceSimCLR = "ce-simclr"

    /// The objectives with a classifier and a cross-entropy term.
    public var isSupervised: Bool { self == .ce || self == .ceRotation || self == .ceSimCLR }
    /// Whether the objective has a contrastive term on the projections (two views per image).
    public var isContrastive: Bool { self != .ce && self != .ceRotation }
}

/// Which definition of stochastic positive attraction (SPA) to use (SPEC 3).
public enum SPAMode: String, Sendable, CaseIterable {
    /// The released code: image-level targets; over `k != i` the target's logit uses `1/tau`, the
    /// partner's logit is 0 (but stays in the denominator), every other logit uses `M(i,k)`.
    case official
    /// Paper eq. 8-9 with one sampled target per view:
    /// `l(i) = -sim_{i,t}/tau + log sum_{parent(k) != parent(i)} exp(sim_ik * M(i,k))`.
    case paperSample = "paper-sample"
    /// Paper eq. 22: the paper-sample term averaged over every `t` in `B+(i)`; nothing is sampled.
    case paperExpectation = "paper-expectation"
}

/// Hyper-parameters of the objective.
///
/// The multiplier (inverse temperature) of a pair `(i, k)`, `k != i`, is (SPEC 2)
///
///     M(i,k) = 1/tau   if parent(k) = parent(i)                      (the partner view)
///            = alpha   if y_k = y_i and (r_k = r_i or not useAux)     (same class, other image)
///            = beta    if y_k = y_i and r_k != r_i and useAux
///            = 1/tau   if y_k != y_i
public struct LossConfig: Sendable, Equatable {
    public var kind: LossKind
    public var spa: SPAMode
    /// Temperature of the partner / negative logits.
    public var tau: Double
    /// Multiplier for views of the same class (and rotation) from other images.
    public var alpha: Double
    /// Multiplier for views of the same class with a different rotation (auxiliary task on).
    public var beta: Double
    /// lambda, the weight of SPA in MCL.
    public var spaWeight: Double
    /// Similarity floor: `sim <- max(sim, floor)` with zero gradient below it; nil = none.
    public var floor: Double?
    /// Whether the rotation labels take part in `M(i,k)` and `B+(i)`.
    public var useAux: Bool
    /// `ce-rotation`: the weight of the rotation head's cross-entropy (Hendrycks et al.: 0.5).
    public var rotationWeight: Double = 0.5
    /// `ce-simclr`: lambda of eq. 36, the weight of the SimCLR term (the paper: 0.1).
    public var simclrWeight: Double = 0.1

    /// The contrastive part of the objective: itself, or SimCLR for `ce-simclr` (nil for `ce`, `ce-rotation`).
    public var contrastivePart: LossConfig? {
        switch kind {
        case .ce, .ceRotation: return nil
        case .ceSimCLR: var c = self; c.kind = .simclr; return c
        default: return self
        }
    }

    public init(kind: LossKind = .mcl, spa: SPAMode = .official, tau: Double = 0.2, alpha: Double = 0.05,
                beta: Double = 2.0, spaWeight: Double = 1, floor: Double? = 1e-7, useAux: Bool = true) {
        self.kind = kind
        self.spa = spa
        self.tau = tau
        self.alpha = alpha
        self.beta = beta
        self.spaWeight = spaWeight
        self.floor = floor
        self.useAux = useAux
    }

    /// Whether the objective has an SPA term.
    public var hasSPA: Bool { kind == .spa || kind == .mcl }

    /// Whether `contrastiveLoss` needs per-view SPA targets (official or paper-sample SPA).
    public var needsSPATargets: Bool { hasSPA && spa != .paperExpectation }
}

/// The value of the objective and its gradient.
public struct LossOutput: Sendable {
    /// The total: `ccm + lambda * spa` for MCL, `spa` for kind `.spa`, `ccm` otherwise.
    public var loss: Double
    /// The CCM part (the SimCLR or SupCon value for those kinds; 0 for kind `.spa`).
    public var ccm: Double
    /// The SPA part, unweighted (0 when the objective has none).
    public var spa: Double
    /// dL/dz, `[views, dim]` row-major, with respect to the unnormalised z.
    public var gradZ: [Float]

    public init(loss: Double, ccm: Double, spa: Double, gradZ: [Float]) {
        self.loss = loss
        self.ccm = ccm
        self.spa = spa
        self.gradZ = gradZ
    }
}
