# Sourced by scripts that start a switch on loopback: free ports for it.

# A TCP port nobody listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A port free for both TCP and UDP (SIP listens on both with one number).
free_sip_port() {
    local port
    while :; do
        port=$(free_port)
        python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', $port))" 2>/dev/null && break
    done
    echo "$port"
}
