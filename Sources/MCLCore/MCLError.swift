/// The error every mcl-dist module throws for bad input: a message for people that names the
/// file, the config key, the tensor or the rank concerned. The modules' own names
/// (`SafeTensorsError`, `ModelError`, `DataError`, `EvalError`, `ConfigError`) are aliases of it,
/// kept so a throw site says which layer it comes from.
public struct MCLError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
    /// `"<path>: <message>"`.
    public init(_ path: String, _ message: String) { description = "\(path): \(message)" }
}
