//! Parsing `show servers state` and `show stat`, by column name (so that columns added by
//! newer HAProxy versions do not matter).

use super::error::HaproxyError;

/// `srv_admin_state` bits that mean maintenance: forced, inherited, from the configuration,
/// from a resolution failure, from a CLI-set FQDN.
const ADMIN_MAINT: u32 = 0x01 | 0x02 | 0x04 | 0x20 | 0x40;
/// `srv_admin_state` bits that mean drain: forced or inherited.
const ADMIN_DRAIN: u32 = 0x08 | 0x10;

/// One line of `show servers state <backend>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerState {
    pub(crate) name: String,
    pub(crate) addr: String,
    pub(crate) port: Option<u16>,
    pub(crate) admin: u32,
    /// The weight set by configuration or `set weight` (kept while draining or in maintenance).
    pub(crate) uweight: u32,
}

impl ServerState {
    pub(crate) fn in_maintenance(&self) -> bool {
        self.admin & ADMIN_MAINT != 0
    }

    pub(crate) fn draining(&self) -> bool {
        !self.in_maintenance() && self.admin & ADMIN_DRAIN != 0
    }

    /// Takes part in load balancing (admin state neither maintenance nor drain).
    pub(crate) fn ready(&self) -> bool {
        self.admin & (ADMIN_MAINT | ADMIN_DRAIN) == 0
    }

    /// `ip:port` as HAProxy has it.
    pub(crate) fn address(&self) -> String {
        match self.port {
            Some(port) if self.addr.contains(':') => format!("[{}]:{port}", self.addr),
            Some(port) => format!("{}:{port}", self.addr),
            None => self.addr.clone(),
        }
    }
}

/// One server line of `show stat <backend> 4 -1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerStat {
    pub(crate) name: String,
    /// Current sessions on the server.
    pub(crate) scur: u64,
    /// Requests queued for the server.
    pub(crate) qcur: u64,
    /// `UP`, `UP 1/3`, `DOWN`, `DOWN 1/2`, `DRAIN`, `MAINT`, `no check`, ...
    pub(crate) status: String,
    /// `L7OK`, `L4CON`, `* L7OK` (a check running), empty without checks.
    pub(crate) check_status: String,
    /// The check's own words (`Layer7 check passed`).
    pub(crate) check_desc: String,
}

impl ServerStat {
    /// Requests in flight or waiting for this server.
    pub(crate) fn in_flight(&self) -> u64 {
        self.scur + self.qcur
    }
}

fn parse_error(command: &str, reason: impl Into<String>) -> HaproxyError {
    HaproxyError::Parse { command: command.to_owned(), reason: reason.into() }
}

/// Parses `show servers state` (format version 1).
pub(crate) fn parse_servers_state(command: &str, text: &str) -> Result<Vec<ServerState>, HaproxyError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let version = lines.next().unwrap_or("").trim();
    if version != "1" {
        return Err(parse_error(command, format!("unknown format version {version:?} (expected 1): {text:.200}")));
    }
    let mut columns: Vec<&str> = Vec::new();
    let mut servers = Vec::new();
    for line in lines {
        if let Some(header) = line.strip_prefix('#') {
            columns = header.split_whitespace().collect();
            continue;
        }
        let index = |name: &str| {
            columns.iter().position(|c| *c == name).ok_or_else(|| parse_error(command, format!("no column {name}")))
        };
        let values: Vec<&str> = line.split_whitespace().collect();
        let get = |name: &str| -> Result<&str, HaproxyError> {
            let i = index(name)?;
            values.get(i).copied().ok_or_else(|| parse_error(command, format!("short line: {line}")))
        };
        let number = |name: &str| -> Result<u32, HaproxyError> {
            let v = get(name)?;
            v.parse().map_err(|_| parse_error(command, format!("{name} is {v:?}, not a number")))
        };
        servers.push(ServerState {
            name: get("srv_name")?.to_owned(),
            addr: get("srv_addr")?.to_owned(),
            port: get("srv_port").ok().and_then(|p| p.parse().ok()).filter(|p| *p != 0),
            admin: number("srv_admin_state")?,
            uweight: number("srv_uweight")?,
        });
    }
    Ok(servers)
}

/// Parses the server lines of `show stat` (CSV with a `# pxname,svname,...` header).
pub(crate) fn parse_stat(command: &str, text: &str) -> Result<Vec<ServerStat>, HaproxyError> {
    let mut columns: Vec<String> = Vec::new();
    let mut servers = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(header) = line.strip_prefix("# ") {
            columns = split_csv(header);
            continue;
        }
        if columns.is_empty() {
            return Err(parse_error(command, format!("no header line before {line:.200}")));
        }
        let values = split_csv(line);
        let get = |name: &str| -> &str {
            columns.iter().position(|c| c == name).and_then(|i| values.get(i)).map_or("", String::as_str)
        };
        let svname = get("svname");
        if svname == "FRONTEND" || svname == "BACKEND" {
            continue;
        }
        let count = |name: &str| -> Result<u64, HaproxyError> {
            let v = get(name);
            if v.is_empty() {
                return Ok(0);
            }
            v.parse().map_err(|_| parse_error(command, format!("{name} of {svname} is {v:?}, not a number")))
        };
        servers.push(ServerStat {
            name: svname.to_owned(),
            scur: count("scur")?,
            qcur: count("qcur")?,
            status: get("status").to_owned(),
            check_status: get("check_status").to_owned(),
            check_desc: get("check_desc").to_owned(),
        });
    }
    Ok(servers)
}

/// Splits one CSV line; fields may be double-quoted with `""` for a quote.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    // Answers of HAProxy 2.6.12 (Debian bookworm), shortened to the columns that matter.
    const STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 app 1 blue.h1 127.0.0.1 2 8 50 100 1 15 3 3 6 0 0 0 - 18101 - 0 0 - - 0\n3 app 4 green.n1 127.0.0.1 0 1 0 0 1 15 3 1 6 0 0 0 - 18103 - 0 0 - - 0\n";

    #[test]
    fn servers_state() {
        let servers = parse_servers_state("show servers state app", STATE).unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].name, "blue.h1");
        assert!(servers[0].draining() && !servers[0].ready() && !servers[0].in_maintenance());
        assert_eq!(servers[0].uweight, 50);
        assert_eq!(servers[0].address(), "127.0.0.1:18101");
        assert!(servers[1].in_maintenance());
        assert!(parse_servers_state("x", "2\n").is_err());
    }

    #[test]
    fn stat() {
        let text = "# pxname,svname,qcur,qmax,scur,status,check_status,check_desc\napp,blue.h1,1,0,3,DRAIN,L7OK,\"Layer7, passed\"\napp,BACKEND,0,0,3,UP,,\n\n";
        let servers = parse_stat("show stat app 4 -1", text).unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!((servers[0].scur, servers[0].qcur, servers[0].in_flight()), (3, 1, 4));
        assert_eq!(servers[0].status, "DRAIN");
        assert_eq!(servers[0].check_desc, "Layer7, passed");
    }
}
