import Foundation
import Testing

/// A throwaway CA and a server certificate for 127.0.0.1 / localhost, made with the openssl CLI.
struct TestPKI {
    let directory: URL
    var caFile: String { self.directory.appendingPathComponent("ca.pem").path }
    var certificateFile: String { self.directory.appendingPathComponent("server.pem").path }
    var keyFile: String { self.directory.appendingPathComponent("server.key").path }
    var dnsOnlyCertificateFile: String { self.directory.appendingPathComponent("dns-only.pem").path }

    static func make() throws -> TestPKI {
        let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl", "/opt/homebrew/bin/openssl"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        let tool = try #require(openssl, "install openssl: the wss tests generate their certificates with it")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("edgeswap-ws-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = """
            [req]
            distinguished_name = dn
            prompt = no
            [dn]
            CN = edgeswap test CA
            [v3_ca]
            basicConstraints = critical,CA:TRUE
            keyUsage = critical,keyCertSign,cRLSign
            subjectKeyIdentifier = hash
            [v3_server]
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = DNS:localhost,IP:127.0.0.1
            subjectKeyIdentifier = hash
            authorityKeyIdentifier = keyid
            [v3_dns_only]
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = DNS:localhost
            """
        try config.write(to: directory.appendingPathComponent("pki.cnf"), atomically: true, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        let steps: [[String]] = [
            ["req", "-x509", "-config", "pki.cnf", "-extensions", "v3_ca"] + ec
                + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
            ["req", "-new", "-config", "pki.cnf", "-subj", "/CN=localhost"] + ec
                + ["-keyout", "server.key", "-out", "server.csr"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "pki.cnf", "-extensions", "v3_server"],
            // Same key, but a certificate naming only DNS:localhost (no IP SAN), to test SNI names.
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "dns-only.pem", "-days", "2", "-extfile", "pki.cnf", "-extensions", "v3_dns_only"],
        ]
        for arguments in steps {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: tool)
            process.arguments = arguments
            process.currentDirectoryURL = directory
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            try #require(process.terminationStatus == 0, "openssl \(arguments.joined(separator: " ")) failed")
        }
        return TestPKI(directory: directory)
    }

    func remove() {
        try? FileManager.default.removeItem(at: self.directory)
    }
}
