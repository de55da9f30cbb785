package ha

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// maxKeyFile bounds how much of a key file is read: a key is a few dozen bytes.
const maxKeyFile = 4096

// ReadKey reads the shared heartbeat key from path. It refuses a file that anyone but its owner
// may read or write (mode 0600 or stricter is required, as for ssh keys), and a key shorter than
// MinKeyLen bytes. Trailing white space is not part of the key, so a key written by
// `head -c 32 /dev/urandom | base64 > ha.key` works as it reads.
func ReadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open [ha] key_file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path: what is checked is what is read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to stat [ha] key_file: %w", err)
	}
	if msg := KeyFileProblem(fi); msg != "" {
		return nil, fmt.Errorf("[ha] key_file %s: %s", path, msg)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile))
	if err != nil {
		return nil, fmt.Errorf("failed to read [ha] key_file: %w", err)
	}
	key := bytes.TrimRight(b, " \t\r\n")
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("[ha] key_file %s holds %d bytes; write at least %d random bytes, e.g. `head -c 32 /dev/urandom | base64 > %s`", path, len(key), MinKeyLen, path)
	}
	return key, nil
}

// KeyFileProblem says what is wrong with a key file's metadata, or "".
func KeyFileProblem(fi os.FileInfo) string {
	if !fi.Mode().IsRegular() {
		return "is not a regular file"
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Sprintf("has mode %04o, so others than its owner may read it; run `chmod 600` on it", perm)
	}
	return ""
}
