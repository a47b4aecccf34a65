package atrest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// Tests lower these; production keeps age's defaults (2^18 to write, at
// most 2^22 accepted on read: about 15 s and 4 GiB for a hostile file).
var (
	scryptWorkFactor    = 18
	scryptMaxWorkFactor = 22
)

// magic starts every age file; the version that follows is checked by age,
// so that a file of a later version is an error rather than "plaintext".
const magic = "age-encryption.org/"

var (
	// ErrNoPassphrase is returned (wrapped, with the file's name) when a
	// file is encrypted and no passphrase was given.
	ErrNoPassphrase = errors.New("atrest: encrypted file and no passphrase")
	// ErrWrongPassphrase is returned (wrapped, with the file's name) when
	// the passphrase does not decrypt a file.
	ErrWrongPassphrase = errors.New("atrest: wrong passphrase")
)

// fileError names the file an error is about and wraps a sentinel or
// age's error.
type fileError struct {
	path string
	msg  string
	err  error
}

func (e *fileError) Error() string { return "atrest: " + e.path + ": " + e.msg }
func (e *fileError) Unwrap() error { return e.err }

// encrypted reports whether b is an age file, binary or armored.
func encrypted(b []byte) bool {
	return bytes.HasPrefix(b, []byte(magic)) ||
		bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte(armor.Header))
}

// ReadFile returns the content of the file at path, decrypted with pass if
// it is encrypted. A plaintext file is returned as it is, whether or not a
// passphrase is given: files written before a passphrase was set stay
// readable, and the caller may write them again encrypted.
func ReadFile(path string, pass Passphrase) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("atrest: %w", err)
	}
	if !encrypted(b) {
		return b, nil
	}
	return decrypt(path, b, pass)
}

// IsEncrypted reports whether the file at path is an age file.
func IsEncrypted(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("atrest: %w", err)
	}
	defer f.Close()
	// Room for the armor header after a little leading whitespace.
	head := make([]byte, 64)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("atrest: %w", err)
	}
	return encrypted(head[:n]), nil
}

func decrypt(path string, b []byte, pass Passphrase) ([]byte, error) {
	if !pass.IsSet() {
		return nil, &fileError{path, fmt.Sprintf("encrypted with a passphrase, and none was given: set %s or pass --passphrase-file FILE", EnvPassphrase), ErrNoPassphrase}
	}
	id, err := age.NewScryptIdentity(*pass.p)
	if err != nil {
		return nil, &fileError{path, err.Error(), err}
	}
	id.SetMaxWorkFactor(scryptMaxWorkFactor)
	var src io.Reader = bytes.NewReader(b)
	if !bytes.HasPrefix(b, []byte(magic)) {
		src = armor.NewReader(src)
	}
	r, err := age.Decrypt(src, id)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			if len(nm.StanzaTypes) == 1 && nm.StanzaTypes[0] == "scrypt" {
				return nil, &fileError{path, "wrong passphrase: it does not decrypt this file", ErrWrongPassphrase}
			}
			return nil, &fileError{path, "encrypted to a key, not with a passphrase", ErrWrongPassphrase}
		}
		return nil, &fileError{path, "damaged encrypted file: " + err.Error(), err}
	}
	out, err := io.ReadAll(r)
	if err != nil {
		clear(out)
		return nil, &fileError{path, "damaged encrypted file: " + err.Error(), err}
	}
	return out, nil
}

// WriteFile writes data to path atomically and durably: a temporary file
// in the same directory is written, fsynced and renamed over path, then
// the directory is fsynced, so that a crash leaves the old content or the
// new one and a power loss after WriteFile returns cannot bring the old
// one back. With a passphrase the content is encrypted (an age file with
// an scrypt recipient). The file gets mode perm; the temporary file is
// removed on failure.
func WriteFile(path string, data []byte, perm os.FileMode, pass Passphrase) error {
	tmp, err := writeTemp(path, data, perm, pass)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("atrest: %w", err)
	}
	return SyncDir(filepath.Dir(path))
}

// writeTemp writes and fsyncs the temporary file that WriteFile renames
// over path, and returns its name. On error it leaves nothing behind.
func writeTemp(path string, data []byte, perm os.FileMode, pass Passphrase) (name string, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("atrest: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return "", fmt.Errorf("atrest: %w", err)
	}
	if pass.IsSet() {
		r, err := age.NewScryptRecipient(*pass.p)
		if err != nil {
			return "", fmt.Errorf("atrest: %w", err)
		}
		r.SetWorkFactor(scryptWorkFactor)
		w, err := age.Encrypt(f, r)
		if err != nil {
			return "", fmt.Errorf("atrest: encrypting %s: %w", path, err)
		}
		if _, err := w.Write(data); err != nil {
			return "", fmt.Errorf("atrest: %w", err)
		}
		if err := w.Close(); err != nil {
			return "", fmt.Errorf("atrest: %w", err)
		}
	} else if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("atrest: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("atrest: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("atrest: %w", err)
	}
	return f.Name(), nil
}

// SyncDir fsyncs a directory, making the creations, renames and removals
// of files in it durable. Where directories cannot be synced (Windows, and
// file systems that answer EINVAL or "not supported") it does nothing.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atrest: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("atrest: syncing directory %s: %w", dir, err)
	}
	return nil
}
