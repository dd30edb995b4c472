import XCTest
import Foundation
import Synchronization
import MCLCore
@testable import MCLTrain

/// A stop signal that lands inside a GEMM must leave the heap and the product intact.
///
/// oneDNN's JIT sgemm kernels (Debian 12's libdnnl) point `rsp` into a heap buffer while they run
/// (oneDNN issue #4845); a handler's frame written below that `rsp` overwrote heap memory, and
/// ~1 in 5-25 stopped 2-rank trainings died later in `free`. `StopSignal.install` runs the handler
/// on an alternate stack. This test sends the main thread thousands of SIGUSR1 while it runs the
/// GEMM shapes of a width-8 network's weight gradient, and checks every product bit for bit against
/// the one computed before the signals (a clobbered buffer changes it) and that `malloc` / `free`
/// still work (glibc aborts the process on corrupted chunk headers, which fails the suite).
final class StopSignalTests: XCTestCase {
    func testSignalsDuringGEMMLeaveHeapAndResultsIntact() throws {
        XCTAssertTrue(StopSignal.install(), "no alternate signal stack")
        defer { StopSignal.uninstall() }
        var current = stack_t()
        XCTAssertEqual(sigaltstack(nil, &current), 0)
        XCTAssertEqual(current.ss_flags & Int32(SS_DISABLE), 0, "the main thread has no alternate signal stack")

        // (m, n, k, transB): dW = dY [cout x P] * cols^T [P x cin*9] of width-8 layers, and a square one.
        let shapes: [(Int, Int, Int, Bool)] = [(8, 72, 4096, true), (16, 144, 1024, true), (32, 288, 256, true),
                                               (64, 576, 64, true), (96, 96, 96, false)]
        var rng = SplitMix64(seed: 7)
        let cases = shapes.map { (m, n, k, tb) -> (Int, Int, Int, Bool, [Float], [Float], [Float]) in
            let a = (0..<(m * k)).map { _ in Float(rng.nextDouble() * 2 - 1) }
            let b = (0..<(k * n)).map { _ in Float(rng.nextDouble() * 2 - 1) }
            var c = [Float](repeating: 0, count: m * n)
            sgemmCall(false, tb, m, n, k, 1, a, k, b, tb ? k : n, 0, &c, n)
            return (m, n, k, tb, a, b, c)
        }

        let target = pthread_self()
        let running = Atomic<Bool>(true), sent = Atomic<Int>(0)
        let sender = Thread {
            while running.load(ordering: .relaxed) {
                pthread_kill(target, SIGUSR1)
                sent.add(1, ordering: .relaxed)
                usleep(50)
            }
        }
        sender.start()
        let t0 = Date()
        var calls = 0, mismatches = 0
        while Date().timeIntervalSince(t0) < 1.5 {
            for (m, n, k, tb, a, b, expected) in cases {
                var c = [Float](repeating: 0, count: m * n)
                sgemmCall(false, tb, m, n, k, 1, a, k, b, tb ? k : n, 0, &c, n)
                if c != expected { mismatches += 1 }
                calls += 1
            }
            // Allocate and free around the products, as the training step does.
            let p = UnsafeMutableRawPointer.allocate(byteCount: 4096 + calls % 4096, alignment: 64)
            p.deallocate()
        }
        running.store(false, ordering: .relaxed)
        while !sender.isFinished { usleep(1000) }
        usleep(10_000)  // a signal still pending is handled before the default action returns
        print("stop-signal: \(sent.load(ordering: .relaxed)) SIGUSR1 during \(calls) GEMMs, \(mismatches) products changed")
        XCTAssertGreaterThan(sent.load(ordering: .relaxed), 1000, "too few signals sent to mean anything")
        XCTAssertEqual(StopSignal.local, SIGUSR1, "the handler never ran")
        XCTAssertEqual(mismatches, 0, "a signal changed a GEMM's result")
    }
}
