package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEExample parses the README's Configuration example: operators copy it first, so it must
// be a file govs accepts as written (optional tables shown commented out).
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "## Configuration")
	if i < 0 {
		t.Fatal("README.md has no ## Configuration section")
	}
	s = s[i:]
	start := strings.Index(s, "```toml\n")
	if start < 0 {
		t.Fatal("README.md's Configuration section has no ```toml block")
	}
	s = s[start+len("```toml\n"):]
	end := strings.Index(s, "```")
	if end < 0 {
		t.Fatal("README.md's toml block is not closed")
	}
	if _, err := Parse([]byte(s[:end]), "README.md", LoadOptions{}); err != nil {
		t.Fatalf("README.md's Configuration example is rejected:\n%v", err)
	}
}
