//! Tries to reach outside its sandbox, for the host's isolation tests.
//!
//! Messages: `read:PATH` (replies the file's text), `write:PATH:TEXT`, `list:PATH`,
//! `env:NAME` (replies the variable's value), `connect:ADDR` (opens a TCP connection),
//! `listen:ADDR` (binds a TCP listener), `send:ADDR` (sends the UDP datagram `probe`),
//! `print:TEXT` (writes a line to stdout). Every failure is an application error
//! carrying the guest's error message.
use warden_guest::{Context, Envelope, Plugin, export_plugin};

struct Probe;

impl Plugin for Probe {
    fn init(_ctx: Context) -> Result<Self, String> {
        Ok(Probe)
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        let text = String::from_utf8(msg.payload)
            .map_err(|_| "probe: message is not UTF-8".to_string())?;
        let fail = |e: std::io::Error| e.to_string();
        if let Some(path) = text.strip_prefix("read:") {
            std::fs::read(path).map_err(fail)
        } else if let Some(rest) = text.strip_prefix("write:") {
            let (path, body) = rest.split_once(':').ok_or("probe: write:PATH:TEXT")?;
            std::fs::write(path, body).map_err(fail)?;
            Ok(b"ok".to_vec())
        } else if let Some(path) = text.strip_prefix("list:") {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(path).map_err(fail)? {
                names.push(entry.map_err(fail)?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names.join("\n").into_bytes())
        } else if let Some(name) = text.strip_prefix("env:") {
            std::env::var(name).map(String::into_bytes).map_err(|e| e.to_string())
        } else if let Some(addr) = text.strip_prefix("connect:") {
            std::net::TcpStream::connect(addr).map_err(fail)?;
            Ok(b"connected".to_vec())
        } else if let Some(addr) = text.strip_prefix("listen:") {
            let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
            Ok(listener.local_addr().map_err(fail)?.to_string().into_bytes())
        } else if let Some(addr) = text.strip_prefix("send:") {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(fail)?;
            socket.send_to(b"probe", addr).map_err(fail)?;
            Ok(b"sent".to_vec())
        } else if let Some(line) = text.strip_prefix("print:") {
            println!("{line}");
            Ok(b"ok".to_vec())
        } else {
            Err(format!("probe: unknown command {text:?}"))
        }
    }
}

export_plugin!(Probe);
