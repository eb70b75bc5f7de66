package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/usersig"
)

// The test binary doubles as readmarkd when READMARKD_TEST_MAIN is set, so
// that the real main (flags, env, signals, exit code) runs in a child.
func TestMain(m *testing.M) {
	if os.Getenv("READMARKD_TEST_MAIN") == "1" {
		os.Args = append([]string{"readmarkd"}, strings.Fields(os.Getenv("READMARKD_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(t *testing.T, args string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"READMARKD_TEST_MAIN=1", "READMARKD_TEST_ARGS=" + args}, env...)...)
	return cmd
}

// startChild starts a child readmarkd and reads its first line, which must
// be "listening on 127.0.0.1:PORT"; it returns the address and the rest of
// the output.
func startChild(t *testing.T, args string, env ...string) (cmd *exec.Cmd, addr string, lines *bufio.Scanner, stderr *bytes.Buffer) {
	t.Helper()
	cmd = child(t, args, env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr = &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines = bufio.NewScanner(out)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "listening on 127.0.0.1:") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("first line %q, stderr %s", lines.Text(), stderr.String())
	}
	return cmd, strings.TrimPrefix(lines.Text(), "listening on "), lines, stderr
}

func TestServeAndShutDownOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	// The listen address comes from the environment, the data dir from a flag.
	cmd, _, lines, stderr := startChild(t, "--data "+dir, "READMARK_LISTEN=127.0.0.1:0")
	if _, err := os.Stat(filepath.Join(dir, "secret")); err != nil {
		t.Errorf("secret file not created: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for lines.Scan() {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr %s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("no exit within 20s of SIGTERM")
	}
}

func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "key")
	if err := os.WriteFile(secretFile, []byte("  my-secret \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run([]string{"token", "--user", "alice", "--ttl", "1h", "--secret-file", secretFile}, &stdout, &stderr); err != nil {
		t.Fatal(err, stderr.String())
	}
	secret, err := server.LoadSecret(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(secret) != "my-secret" {
		t.Fatalf("secret %q: white space not trimmed", secret)
	}
	user, err := usersig.Verify(secret, strings.TrimSpace(stdout.String()), time.Now())
	if err != nil || user != "alice" {
		t.Fatalf("minted token: %q %v", user, err)
	}
	if err := run([]string{"token"}, &stdout, &stderr); err == nil {
		t.Fatal("token without --user succeeded")
	}
}

func TestDevTokensFlag(t *testing.T) {
	// Refused, with a clear message, unless the listener is loopback.
	cmd := child(t, "--dev-tokens --listen 0.0.0.0:0 --data "+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loopback") {
		t.Fatalf("--dev-tokens on 0.0.0.0: err %v, output %s", err, out)
	}

	// On loopback it starts and warns in the log.
	cmd = child(t, "--dev-tokens --listen 127.0.0.1:0 --data "+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	started := lines.Scan() && strings.HasPrefix(lines.Text(), "listening on 127.0.0.1:")
	cmd.Process.Signal(syscall.SIGTERM)
	for lines.Scan() {
	}
	cmd.Wait()
	if !started || !strings.Contains(stderr.String(), "level=WARN") || !strings.Contains(stderr.String(), "DEV TOKENS ENABLED") {
		t.Fatalf("--dev-tokens on loopback: started %v, stderr %s", started, stderr.String())
	}
}
