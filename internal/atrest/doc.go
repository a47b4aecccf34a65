// Package atrest keeps fl-secure's private files on disk: private keys,
// ledger signing keys and threshold-decryption state, encrypted with the
// operator's passphrase, and every state file written atomically and
// durably.
//
// An encrypted file is an age v1 file (C2SP age, https://c2sp.org/age)
// with a single scrypt recipient stanza (section "The scrypt recipient
// type"): scrypt with N = 2^18, r = 8, p = 1 over the passphrase and a
// random 16-byte salt wraps a random file key with ChaCha20-Poly1305; the
// header is authenticated with HMAC-SHA-256 under a key derived from the
// file key; the payload is ChaCha20-Poly1305 in the STREAM construction,
// 64 KiB chunks, the last one marked. The encoding is filippo.io/age's, so
// "age -d FILE" decrypts any of these files with the same passphrase, and
// a file encrypted with "age -p" (binary or armored) is read here.
//
// [WriteFile] writes a temporary file in the destination's directory,
// fsyncs it, renames it over the destination and fsyncs the directory, so
// that after a crash or a power loss the path holds either the old
// content or the new one, and once WriteFile has returned, never the old.
//
// # Security
//
// Encryption gives confidentiality, and integrity against anyone who does
// not know the passphrase: a changed byte, a truncation or a wrong
// passphrase is an error, never wrong data. Its strength is the
// passphrase's: an attacker with a copy of a file can guess passphrases
// offline at the cost of one scrypt evaluation each.
//
// [ReadFile] still reads a plaintext file when a passphrase is given, so
// that files written before a passphrase was set keep working until they
// are re-written encrypted. It therefore does not authenticate a file
// against someone who can write the directory: such a person can put a
// plaintext file in its place. Encryption at rest protects against copies
// of the disk, its backups and other readers, not against writers.
//
// A [Passphrase] never prints: its String, GoString, Format and LogValue
// give "[redacted]", it sits behind a pointer so that fmt does not print
// it from inside an unexported field either, and no error of this package
// contains it. The passphrase and decrypted keys are ordinary Go memory;
// nothing is promised about them once read.
//
// A crash between writing and renaming leaves a temporary file named
// ".NAME.tmp-*" beside NAME, encrypted if NAME would have been; the next
// WriteFile does not reuse it, and it can be deleted.
//
// # Performance
//
// Each encrypted write and each encrypted read costs one scrypt
// evaluation: about 0.8 s and 256 MiB on one core of the CI machine.
// Plaintext reads and writes cost two fsyncs (the file and the directory)
// and nothing else.
package atrest
