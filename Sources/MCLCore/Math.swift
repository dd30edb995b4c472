#if canImport(Glibc)
import Glibc
@inline(__always) func Foundation_log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func Foundation_cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Darwin
@inline(__always) func Foundation_log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) func Foundation_cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif
