package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadControlSocket(t *testing.T) {
	const sock = "/run/govs/test.sock"
	tests := []struct {
		name string
		src  string
		want string
		note string // in the note; "" = no note
		err  string // in the error; "" = none
	}{
		{name: "valid", src: dp + "[control]\nsocket = \"/run/govs/test.sock\"\n" + vsHead + rs, want: sock},
		{name: "no [control]: the default", src: dp + vsHead + rs, want: DefaultControlSocket},
		{name: "path cleaned", src: "[control]\nsocket = \"/run//govs/./test.sock\"\n", want: sock},
		// The rest of the file is not validated.
		{name: "invalid elsewhere", src: "[dataplane]\ninterfaces = [\"no-such-if9\"]\nbogus = 3\n[control]\nsocket = \"/run/govs/test.sock\"\n" +
			strings.Replace(vsHead, "198.18.0.100:80", "198.18.0.100:70000", 1) + rs + "weight = -1\n", want: sock},
		{name: "no [dataplane] at all", src: "[control]\nsocket = \"/run/govs/test.sock\"\n", want: sock},
		{name: "inline table", src: "control = { socket = \"/run/govs/test.sock\" }\n", want: sock},
		{name: "dotted key", src: "control.socket = \"/run/govs/test.sock\"\n", want: sock},
		// Not TOML: found line by line.
		{name: "not TOML, [control] after the error", src: "[dataplane\ninterfaces = [\"l0\"]\n\n[control]  # where govs stats looks\n  socket = \"/run/govs/test.sock\"  # ours\n",
			want: sock, note: "t.toml:1: invalid TOML at column 11 in the table header [dataplane: expected '.' or ']' to end table name, but got '\\n' instead (the file is not valid TOML; using the [control] socket at line 5)"},
		{name: "not TOML, literal string", src: "[control]\nsocket = '/run/govs/test.sock'\n[[virtual_server]\n", want: sock, note: "using the [control] socket at line 2"},
		{name: "not TOML, escapes", src: "[ control ]\nsocket = \"/run/govs/te\\u0073t.sock\"\nx = = 1\n", want: sock, note: "using the [control] socket at line 2"},
		{name: "not TOML, dotted key", src: "\"control\" . socket = \"/run/govs/test.sock\"\nx = = 1\n", want: sock, note: "using the [control] socket at line 1"},
		{name: "not TOML, socket of another table", src: "[dataplane]\nsocket = \"/run/govs/other.sock\"\n[[control]]\nsocket = \"/run/govs/other.sock\"\nx = = 1\n",
			want: DefaultControlSocket, note: "has no readable [control] socket: trying the default " + DefaultControlSocket},
		{name: "not TOML, relative socket", src: "[control]\nsocket = \"govs.sock\"\nx = = 1\n",
			want: DefaultControlSocket, note: "t.toml:3: control.x: invalid TOML at column 5: expected value but found '=' instead (the file is not valid TOML and has no readable [control] socket: trying the default " + DefaultControlSocket + "; -control SOCK names another)"},
		// The socket itself written wrong: an error, not a guess.
		{name: "relative socket", src: "[control]\nsocket = \"govs.sock\"\n", err: `t.toml:2: control.socket: "govs.sock" is not an absolute path`},
		{name: "socket not a string", src: "[control]\nsocket = 5\n", err: `t.toml:2: control.socket: is an integer; write an absolute path`},
		{name: "control not a table", src: "control = \"/run/govs/test.sock\"\n", err: `t.toml:1: control: is a string but must be a table; write [control] on a line of its own, followed by socket = "/run/govs/govs.sock"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "t.toml")
			if err := os.WriteFile(path, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			got, note, err := ReadControlSocket(path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, tt.err)) {
					t.Fatalf("ReadControlSocket = %q, %v; want an error with %q", got, err, tt.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error has several lines, want one: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadControlSocket: %v", err)
			}
			if got != tt.want {
				t.Errorf("socket = %q, want %q", got, tt.want)
			}
			switch {
			case tt.note == "" && note != "":
				t.Errorf("note = %q, want none", note)
			case tt.note != "" && !strings.Contains(note, tt.note):
				t.Errorf("note = %q, want it to contain %q", note, tt.note)
			case strings.Contains(note, "\n"):
				t.Errorf("note has several lines, want one: %q", note)
			}
		})
	}
	_, _, err := ReadControlSocket(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "failed to read config: ") {
		t.Errorf("ReadControlSocket(missing) = %v, want a read error wrapping os.ErrNotExist", err)
	}
}
