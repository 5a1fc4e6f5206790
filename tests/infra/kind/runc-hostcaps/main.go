// runc-hostcaps is an OCI runtime that runs runc after removing, from the container's
// configuration, the capabilities this host cannot grant.
//
// A workaround for sandboxed hosts, not something a normal machine needs: where the host's
// capability bounding set lacks a capability (on this workplace's machines,
// CAP_SYS_RESOURCE), runc cannot give a --privileged container every capability and fails
// with "unable to apply caps: operation not permitted". kind's node containers are
// privileged, and so are some pods inside them (kube-proxy). Registered as Docker's default
// runtime (tests/infra/kind/node-image.sh runtime, only on a host that needs it) and as the runtime of
// the kind node's containerd, it edits
//
//   - <bundle>/config.json on `create` and `run` (the container's process), and
//   - the process file given by --process on `exec` (docker exec, kubectl exec),
//
// keeping only capabilities in this process's own bounding set, then execs runc with the
// same arguments. With nothing to remove it changes no file. Everything else in the JSON is
// kept as it was (numbers as written).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// capabilityNames is the kernel's numbering of capabilities (linux/capability.h).
var capabilityNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// unavailable returns the known capabilities missing from this process's bounding set.
func unavailable() (map[string]bool, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		hex, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		bounding, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("CapBnd %q: %w", hex, err)
		}
		missing := map[string]bool{}
		for bit, name := range capabilityNames {
			if bounding&(1<<uint(bit)) == 0 {
				missing[name] = true
			}
		}
		return missing, nil
	}
	return nil, fmt.Errorf("no CapBnd line in /proc/self/status")
}

// filterCapabilities removes the missing capabilities from a process's "capabilities"
// object (bounding, effective, inheritable, permitted, ambient); true when it changed.
func filterCapabilities(process map[string]any, missing map[string]bool) bool {
	caps, ok := process["capabilities"].(map[string]any)
	if !ok {
		return false
	}
	changed := false
	for set, value := range caps {
		list, ok := value.([]any)
		if !ok {
			continue
		}
		kept := make([]any, 0, len(list))
		for _, c := range list {
			if name, ok := c.(string); ok && missing[name] {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	return changed
}

// rewrite applies filterCapabilities to the JSON file at path; process picks the process
// object out of the document (config.json has it under "process", a process file is one).
func rewrite(path string, missing map[string]bool, process func(map[string]any) map[string]any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var doc map[string]any
	if err := decoder.Decode(&doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	proc := process(doc)
	if proc == nil || !filterCapabilities(proc, missing) {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".runc-hostcaps"
	if err := os.WriteFile(tmp, out, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// flagValue returns the value of a flag given as "--name value", "--name=value" or "-n value".
func flagValue(args []string, long, short string) (string, bool) {
	for i, arg := range args {
		if value, ok := strings.CutPrefix(arg, long+"="); ok {
			return value, true
		}
		if (arg == long || (short != "" && arg == short)) && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// command returns runc's subcommand and its arguments: the first argument that is not a
// global flag or a global flag's value.
func command(args []string) (string, []string) {
	withValue := map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if withValue[arg] {
			i++
			continue
		}
		if strings.HasPrefix(arg, "-") {
			continue
		}
		return arg, args[i+1:]
	}
	return "", nil
}

func adjust(args []string) error {
	sub, rest := command(args)
	if sub != "create" && sub != "run" && sub != "exec" {
		return nil
	}
	missing, err := unavailable()
	if err != nil || len(missing) == 0 {
		return err
	}
	if sub == "exec" {
		path, ok := flagValue(rest, "--process", "-p")
		if !ok {
			return nil // the process comes from the command line: runc builds it from config.json
		}
		return rewrite(path, missing, func(doc map[string]any) map[string]any { return doc })
	}
	bundle, ok := flagValue(rest, "--bundle", "-b")
	if !ok {
		bundle = "."
	}
	return rewrite(filepath.Join(bundle, "config.json"), missing, func(doc map[string]any) map[string]any {
		proc, _ := doc["process"].(map[string]any)
		return proc
	})
}

// runc finds the real runc: RUNC_HOSTCAPS_RUNC, else the first runc on PATH.
func runc() (string, error) {
	if path := os.Getenv("RUNC_HOSTCAPS_RUNC"); path != "" {
		return path, nil
	}
	return exec.LookPath("runc")
}

func main() {
	args := os.Args[1:]
	if err := adjust(args); err != nil {
		fmt.Fprintf(os.Stderr, "runc-hostcaps: cannot adjust the capabilities: %v\n", err)
		os.Exit(1)
	}
	path, err := runc()
	if err != nil {
		fmt.Fprintln(os.Stderr, "runc-hostcaps: runc is not on PATH: install runc, or set RUNC_HOSTCAPS_RUNC")
		os.Exit(1)
	}
	if err := syscall.Exec(path, append([]string{"runc"}, args...), os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-hostcaps: exec %s: %v\n", path, err)
		os.Exit(1)
	}
}
