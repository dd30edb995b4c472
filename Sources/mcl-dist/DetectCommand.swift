import Foundation
import ArgumentParser
import MCLCore
import MCLDistributed
import MCLTrain

struct DetectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect",
        abstract: "Flag out-of-distribution images with a detector written by `evaluate` (run under mpirun for several ranks).",
        discussion: """
        Inputs: JPEG/PNG files, folders (searched recursively for .jpg, .jpeg, .png), packed .mcld files.
        Images of any size are brought to 32x32: 32x32 as is, 28x28 zero-padded (as `data prepare`),
        any other size centre-cropped to a square and area-averaged to 32x32. Grayscale becomes RGB.
        Per image: path, predicted class, score (higher = more in-distribution; the same score as
        evaluate's score files), decision (in when score >= the detector's threshold) and, with
        --views, each SEI view's distance to the predicted class. A summary goes to stderr.
        """)
    @Option(help: "detector.safetensors (written by evaluate next to its report).") var detector: String
    @Option(help: "The checkpoint the detector was fitted on (default: the one it names).") var checkpoint: String?
    @Argument(help: "Image files, folders, .mcld files.") var inputs: [String]
    @Option(help: "csv or jsonl.") var format = "csv"
    @Option(help: "Output file (default: standard output).") var out: String?
    @Flag(help: "Also output each SEI view's distance to the predicted class.") var views = false
    @Option(name: .customLong("on-unreadable"), help: "skip (name it on stderr and go on) or fail.") var onUnreadable = "skip"
    @Option(help: "Network inputs per forward pass.") var batch = 256
    @Option(help: "Threads per rank.") var threads: Int?

    func validate() throws {
        guard DetectOptions.Format(rawValue: format) != nil else { throw ValidationError("--format must be csv or jsonl") }
        guard ["skip", "fail"].contains(onUnreadable) else { throw ValidationError("--on-unreadable must be skip or fail") }
        guard batch >= 1 && batch <= 1 << 16 else { throw ValidationError("--batch must be 1...65536") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        runGuarded {
            let comm = MPICommunicator()
            Threads.set(Threads.perRank(explicit: threads))
            var o = DetectOptions(detector: detector, inputs: inputs)
            o.checkpoint = checkpoint; o.format = DetectOptions.Format(rawValue: format)!; o.out = out
            o.views = views; o.skipUnreadable = onUnreadable == "skip"; o.batch = batch
            if let summary = try runDetectJob(o, comm: comm, log: rootLog(comm.rank)) {
                FileHandle.standardError.write(Data((summary + "\n").utf8))
            }
            return 0
        }
    }
}
