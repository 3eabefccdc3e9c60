// Package filenames names the files of an instance's folder
// (DEVBOX_HOME/instances/NAME): one table, used by the code that writes
// them and by the tests that look at them.
package filenames

// In the instance folder.
const (
	UserKey      = "id_ed25519"           // devbox's key for the guest user (and .pub)
	HostKey      = "ssh_host_ed25519_key" // the guest's host key, pinned (and .pub)
	KnownHosts   = "known_hosts"          // the pinned host key, for OpenSSH (devbox ssh-config)
	ConsoleLog   = "console.log"          // the guest's serial console, written by libvirt
	ProvisionLog = "provision.log"        // what provisioning ran in the guest
	Shares       = "shares.json"          // the shared folders and forwards the user accepted
	AgentPID     = "agent.pid"            // the running agent's process id
	AgentLog     = "agent.log"            // what the agent did and why it failed
	AgentStderr  = "agent.stderr"         // the agent's stderr: an error before its log is open, a panic
	AgentConfig  = "agent.config"         // what the running agent serves
	AgentHostKey = "agent_host_key"       // the agent's multiplexer's host key (and .pub)
	AgentSocket  = "agent.sock"           // the agent's SSH multiplexer, for devbox run
	DockerSocket = "docker.sock"          // the guest's Docker socket, forwarded
	VirtioFS     = "virtiofs"             // virtiofsd's sockets when QEMU runs as the user
	BoxSHA256    = "box.sha256"           // the digest of the box the instance was made from
)
