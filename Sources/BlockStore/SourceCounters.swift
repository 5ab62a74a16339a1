import Logging
import NIOConcurrencyHelpers

/// The counters of one `IndexedCARBlockSource`, shared by its pieces (locator, index cache, section reader) and
/// updated under a lock: counting is never an actor hop.
final class SourceCounters: Sendable {
    private let box = NIOLockedValueBox(BlockSourceStatistics())
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    var snapshot: BlockSourceStatistics { box.withLockedValue { $0 } }

    func update(_ body: (inout BlockSourceStatistics) -> Void) {
        box.withLockedValue { body(&$0) }
    }

    /// Counts a failed call to the shared store (Redis: scopes or indexes) and logs the first few of them and every
    /// thousandth: the log says what failed and that serving goes on without the shared store.
    func sharedStoreFailed(_ operation: String, _ error: any Error) {
        let failures = box.withLockedValue { stats in
            stats.sharedStoreFailures += 1
            return stats.sharedStoreFailures
        }
        if failures <= 3 || failures.isMultiple(of: 1000) {
            logger.warning("shared store unavailable; serving without it",
                           metadata: ["operation": "\(operation)", "error": "\(error)", "failures": "\(failures)"])
        }
    }
}
