//! apt for a guest: the guest has no route out, so a forward proxy (Debian's
//! tinyproxy; apt-cacher-ng answered 503 here) listens on the gateway, lets in
//! the guest's subnet only, and forwards to the machine's Debian mirror hosts
//! only (`FilterDefaultDeny`): anything else the guest asks for gets 403.

use super::{program, rootfs, spawn_tied, Guest};
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const PROXY_PORT: u16 = 8888;

impl Guest {
    /// [`Guest::start_apt_proxy`], builder style:
    /// `Guest::start(…).with_apt_proxy()`.
    pub fn with_apt_proxy(mut self) -> Guest {
        self.start_apt_proxy();
        self
    }

    /// Starts tinyproxy on `gateway:8888` for this guest and points the guest's apt at it
    /// (`/etc/apt/apt.conf.d/99slipway-proxy`). Stopped when the guest drops.
    pub fn start_apt_proxy(&mut self) {
        assert!(
            self.proxy.is_none(),
            "guest_support: the proxy already runs"
        );
        let tinyproxy = program("tinyproxy", "tinyproxy");
        let filter = self.dir.join("tinyproxy.filter");
        let hosts = rootfs::mirror_hosts();
        let rules: String = hosts
            .iter()
            .map(|host| format!("^{}$\n", host.replace('.', "\\.")))
            .collect();
        fs::write(&filter, rules).expect("tinyproxy.filter");
        let conf = self.dir.join("tinyproxy.conf");
        fs::write(
            &conf,
            format!(
                "User nobody\n\
                 Group nogroup\n\
                 Port {PROXY_PORT}\n\
                 Listen {gateway}\n\
                 Timeout 120\n\
                 MaxClients 50\n\
                 LogLevel Info\n\
                 DisableViaHeader Yes\n\
                 Allow {subnet}/{prefix}\n\
                 ConnectPort 443\n\
                 Filter \"{filter}\"\n\
                 FilterType ere\n\
                 FilterDefaultDeny Yes\n",
                gateway = self.gateway,
                subnet = super::net::network(self.address, self.prefix),
                prefix = self.prefix,
                filter = filter.display(),
            ),
        )
        .expect("tinyproxy.conf");
        let log = fs::File::create(self.dir.join("tinyproxy.log")).expect("tinyproxy.log");
        // tinyproxy drops to `nobody`, and that clears PR_SET_PDEATHSIG: so a shell that
        // keeps it is PID 1 of a PID namespace with tinyproxy in it. Whether the guest is
        // dropped or this test process is killed, that shell dies and takes tinyproxy along.
        let mut cmd = Command::new(program("unshare", "util-linux"));
        cmd.args(["--pid", "--fork", "--kill-child", "sh", "-c"])
            .arg(r#""$0" -d -c "$1" & wait"#)
            .arg(tinyproxy)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.proxy = Some(spawn_tied(cmd).expect("guest_support: cannot start tinyproxy"));

        let addr = SocketAddr::from((self.gateway, PROXY_PORT));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = self
                .proxy
                .as_mut()
                .and_then(|p| p.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                panic!(
                    "guest_support: tinyproxy did not listen on {addr} ({exited:?}); its log:\n{}",
                    self.proxy_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let apt_conf = format!("Acquire::http::Proxy \"{}\";\n", self.proxy_url().unwrap());
        let out = self.exec_with_input(
            "cat > /etc/apt/apt.conf.d/99slipway-proxy",
            apt_conf.as_bytes(),
        );
        assert!(
            out.status.success(),
            "guest_support: cannot write the guest's apt proxy setting: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `http://GATEWAY:8888` while the proxy runs.
    pub fn proxy_url(&self) -> Option<String> {
        self.proxy
            .as_ref()
            .map(|_| format!("http://{}:{PROXY_PORT}", self.gateway))
    }

    /// What tinyproxy logged so far.
    pub fn proxy_log(&self) -> String {
        fs::read_to_string(self.dir.join("tinyproxy.log")).unwrap_or_default()
    }
}
