import Foundation
import ArgumentParser
import MCLCore
import MCLNet
import MCLDistributed

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Version, MPI world, threads and OpenBLAS configuration.")
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        runGuarded {
            let comm = MPICommunicator()
            let threads = Threads.perRank(explicit: nil)
            Threads.set(threads)
            let env = ProcessInfo.processInfo.environment
            let info: [String: String] = [
                "version": mclVersion, "world_size": "\(comm.size)", "rank": "\(comm.rank)",
                "threads_per_rank": "\(threads)", "cpu_count": "\(ProcessInfo.processInfo.activeProcessorCount)",
                "gemm": GEMMEngine.description, "openblas_core": BLASInfo.coreName, "openblas_config": BLASInfo.config,
                "openblas_coretype_env": env["OPENBLAS_CORETYPE"] ?? "(unset)",
                "openblas_l2_size_env": env["OPENBLAS_L2_SIZE"] ?? "(unset)",
            ]
            if comm.isRoot {
                if json {
                    let d = try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys, .prettyPrinted])
                    print(String(decoding: d, as: UTF8.self))
                } else {
                    for k in info.keys.sorted() { print("\(k): \(info[k]!)") }
                }
            }
            return 0
        }
    }
}
