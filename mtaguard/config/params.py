# -*- test-case-name: tests.test_config_params -*-
"""
The main.cf parameters mtaguard acts on.

Each parameter is declared once, as a module attribute named exactly like
the parameter (C{params.smtpd_timeout} is the parameter C{smtpd_timeout}).
The only exception is C{2bounce_notice_recipient}, which is not a Python
identifier: it is reachable with C{getattr(params, "2bounce_notice_recipient")}.

Every declaration carries:

  - the default exactly as Postfix 3.7's C{postconf -d} prints it, including
    its C{$name} and C{${name?...}} expressions (see
    C{tests/data/postconf-d-3.7.txt}); host-dependent defaults are functions
    from L{mtaguard.config._hostdefaults};
  - the value type, which the I{expanded} default must fit;
  - the default time unit of time parameters, which Postfix takes from the
    unit letter of the default (so C{maximal_queue_lifetime = 5} means five
    days);
  - the lower and upper bounds that Postfix itself enforces at start-up;
  - a one-line description.

Names from older Postfix releases that a current default still refers to
(C{smtpd_per_record_deadline}, C{postscreen_blacklist_action}, ...) are
declared too, as strings with an empty default: their value only matters
through the expansion of the parameter that replaced them, which checks it.

The one deliberate difference from Postfix 3.7 is C{smtpd_forbid_bare_newline},
which defaults to C{normalize}, as it does in Postfix 3.9 and later.

Every other Postfix parameter is accepted for compatibility only, in
L{mtaguard.config._compat}.  This module does not import that one.
"""

from __future__ import annotations

from mtaguard.config import _hostdefaults
from mtaguard.config._registry import (
    boolParameter,
    registry,
    intParameter,
    listParameter,
    mapParameter,
    stringParameter,
    timeParameter,
)

#: Parameters whose values Postfix does not C{$}-expand when it reads
#: main.cf: they are expanded later, with per-request macros such as
#: C{$rbl_code} or C{$client_address}, or not at all (character filters).
#: Found with C{postconf -x} on Postfix 3.7.11: these are the names whose
#: C{$mail_name} stayed unexpanded.  Some of them are compatibility-only.
RAW_PARAMETERS: frozenset[str] = frozenset(
    {
        "command_execution_directory",
        "default_rbl_reply",
        "forward_path",
        "luser_relay",
        "mailbox_command",
        "postscreen_expansion_filter",
        "postscreen_reject_footer",
        "smtpd_expansion_filter",
        "smtpd_reject_footer",
    }
)

#: Parameters that Postfix treats as read-only: a main.cf setting is
#: ignored with a warning (C{postconf -x} says "read-only parameter
#: assignment").
READ_ONLY_PARAMETERS: frozenset[str] = frozenset({"process_id", "process_name", "service_name"})

_BARE_NEWLINE_NOTE = (
    "Postfix 3.7 defaults to no; mtaguard defaults to normalize as Postfix 3.9"
    " and later do."
)


# --- Identity, directories and process ---------------------------------------

myhostname = stringParameter(
    "myhostname",
    _hostdefaults.myhostname,
    "Fully qualified name of this host, used in the greeting, HELO and bounces.",
)
mydomain = stringParameter(
    "mydomain",
    _hostdefaults.mydomain,
    "Internet domain of this host; the default is myhostname minus its first label.",
)
myorigin = stringParameter(
    "myorigin",
    "$myhostname",
    "Domain appended to locally posted addresses that carry no domain.",
)
mail_name = stringParameter(
    "mail_name",
    "Postfix",
    "Product name shown in the SMTP greeting and in Received: headers.",
)
mail_version = stringParameter(
    "mail_version",
    "3.7.11",
    "Version string of the Postfix release this configuration mirrors.",
)
compatibility_level = stringParameter(
    "compatibility_level",
    "0",
    "Backwards-compatibility level selecting the safer defaults of later Postfix releases.",
)
config_directory = stringParameter(
    "config_directory",
    "/etc/postfix",
    "Directory holding main.cf and master.cf.",
)
data_directory = stringParameter(
    "data_directory",
    "/var/lib/postfix",
    "Directory for writable state such as caches and PRNG exchange files.",
)
daemon_directory = stringParameter(
    "daemon_directory",
    "/usr/lib/postfix/sbin",
    "Directory where the Postfix daemon programs live.",
)
meta_directory = stringParameter(
    "meta_directory",
    "/etc/postfix",
    "Directory holding Postfix metadata files such as postfix-files.",
)
queue_directory = stringParameter(
    "queue_directory",
    "/var/spool/postfix",
    "Root of the mail queue.",
)
process_id = intParameter(
    "process_id",
    _hostdefaults.processID,
    "Read-only: the id of the running process.",
)
process_name = stringParameter(
    "process_name",
    _hostdefaults.processName,
    "Read-only: the name of the running program.",
)
service_name = stringParameter(
    "service_name",
    "",
    "Read-only: the master.cf service name of the running process.",
)
stress = stringParameter(
    "stress",
    "",
    "Set by the master to yes while a public service is overloaded; empty otherwise.",
)
syslog_name = stringParameter(
    "syslog_name",
    "${multi_instance_name?{$multi_instance_name}:{postfix}}",
    "Prefix of every log record written by this instance.",
)
syslog_facility = stringParameter(
    "syslog_facility",
    "mail",
    "Syslog facility used for log records.",
)
maillog_file = stringParameter(
    "maillog_file",
    "",
    "File to log to instead of syslog; empty means syslog.",
)
multi_instance_name = stringParameter(
    "multi_instance_name",
    "",
    "Optional instance name, also used as the default syslog_name.",
)
mail_owner = stringParameter(
    "mail_owner",
    "postfix",
    "Unprivileged account that owns the queue and runs the daemons.",
)
inet_interfaces = listParameter(
    "inet_interfaces",
    "all",
    "Local addresses to accept SMTP connections on (\"all\", \"loopback-only\" or a list).",
)
inet_protocols = listParameter(
    "inet_protocols",
    "all",
    "IP protocol versions to use: all, ipv4, ipv6 or a list.",
)
proxy_interfaces = listParameter(
    "proxy_interfaces",
    "",
    "Addresses reached through a proxy or NAT that still count as this host.",
)
default_process_limit = intParameter(
    "default_process_limit",
    "100",
    "Default per-service process limit in master.cf.",
    minimum=1,
)
known_tcp_ports = listParameter(
    "known_tcp_ports",
    "lmtp=24, smtp=25, smtps=submissions=465, submission=587",
    "Symbolic port names and the numbers to use when the services database lacks them.",
)
debug_peer_level = intParameter(
    "debug_peer_level",
    "2",
    "Extra logging verbosity for peers matched by debug_peer_list.",
    minimum=1,
)
debug_peer_list = listParameter(
    "debug_peer_list",
    "",
    "Clients or servers that get extra-verbose logging.",
)
info_log_address_format = stringParameter(
    "info_log_address_format",
    "external",
    "Whether logged addresses are shown quoted (external) or unquoted (internal).",
    choices=("external", "internal"),
)
respectful_logging = boolParameter(
    "respectful_logging",
    "${{$compatibility_level} <level {3.6} ? {no} : {yes}}",
    "Log with neutral wording (allowlist/denylist) instead of the legacy terms.",
)


# --- Message and protocol limits ---------------------------------------------

line_length_limit = intParameter(
    "line_length_limit",
    "2048",
    "Longest line kept whole when reading commands or content; longer ones are split.",
    minimum=512,
)
message_size_limit = intParameter(
    "message_size_limit",
    "10240000",
    "Largest message accepted, in bytes; 0 means no limit.",
)
queue_minfree = intParameter(
    "queue_minfree",
    "0",
    "Free queue file system space required to accept mail, in bytes; 0 means none.",
)
header_size_limit = intParameter(
    "header_size_limit",
    "102400",
    "Largest message header accepted, in bytes.",
)
hopcount_limit = intParameter(
    "hopcount_limit",
    "50",
    "Most Received: headers a message may carry before it is treated as looping.",
)
smtputf8_enable = boolParameter(
    "smtputf8_enable",
    "${{$compatibility_level} <level {1} ? {no} : {yes}}",
    "Offer SMTPUTF8 and accept UTF-8 in envelope addresses.",
)
strict_smtputf8 = boolParameter(
    "strict_smtputf8",
    "no",
    "Accept UTF-8 addresses only from clients that asked for SMTPUTF8.",
)
strict_rfc821_envelopes = boolParameter(
    "strict_rfc821_envelopes",
    "no",
    "Require <> around MAIL FROM and RCPT TO addresses and reject comments in them.",
)
disable_vrfy_command = boolParameter("disable_vrfy_command", "no", "Refuse the VRFY command.")
allow_untrusted_routing = boolParameter(
    "allow_untrusted_routing",
    "no",
    "Allow sender-specified routing (user@a@b, user%a@b) from untrusted clients.",
)
resolve_null_domain = boolParameter(
    "resolve_null_domain",
    "no",
    "Treat address@ (an empty domain) as local instead of rejecting it.",
)
resolve_numeric_domain = boolParameter(
    "resolve_numeric_domain",
    "no",
    "Treat user@ipaddress as local when the address is one of ours.",
)
broken_sasl_auth_clients = boolParameter(
    "broken_sasl_auth_clients",
    "no",
    "Also announce AUTH in the obsolete AUTH=mech form for old clients.",
)


# --- Reply codes and rejection behaviour -------------------------------------

soft_bounce = boolParameter(
    "soft_bounce",
    "no",
    "Turn every permanent 5xx rejection into a temporary 4xx one (safety net while testing).",
)
reject_code = intParameter("reject_code", "554", "Reply code for the reject restriction.")
defer_code = intParameter(
    "defer_code",
    "450",
    "Reply code for the defer restriction and similar temporary refusals.",
)
relay_domains_reject_code = intParameter(
    "relay_domains_reject_code",
    "554",
    "Reply code when a client tries to relay through this server.",
)
access_map_reject_code = intParameter(
    "access_map_reject_code",
    "554",
    "Reply code for a REJECT answer from an access table.",
)
access_map_defer_code = intParameter(
    "access_map_defer_code",
    "450",
    "Reply code for a DEFER answer from an access table.",
)
maps_rbl_reject_code = intParameter(
    "maps_rbl_reject_code",
    "554",
    "Reply code for a client found in a DNS block list.",
)
unknown_client_reject_code = intParameter(
    "unknown_client_reject_code",
    "450",
    "Reply code when the client's name or address does not resolve consistently.",
)
unknown_hostname_reject_code = intParameter(
    "unknown_hostname_reject_code",
    "450",
    "Reply code when the HELO name or sender domain has no DNS record.",
)
unknown_address_reject_code = intParameter(
    "unknown_address_reject_code",
    "450",
    "Reply code when the sender or recipient domain does not resolve.",
)
invalid_hostname_reject_code = intParameter(
    "invalid_hostname_reject_code",
    "501",
    "Reply code for a syntactically invalid HELO name.",
)
non_fqdn_reject_code = intParameter(
    "non_fqdn_reject_code",
    "504",
    "Reply code for a HELO name or address domain that is not fully qualified.",
)
plaintext_reject_code = intParameter(
    "plaintext_reject_code",
    "450",
    "Reply code when a client must use TLS for the requested operation.",
)
multi_recipient_bounce_reject_code = intParameter(
    "multi_recipient_bounce_reject_code",
    "550",
    "Reply code for a multi-recipient bounce that is refused.",
)
unknown_local_recipient_reject_code = intParameter(
    "unknown_local_recipient_reject_code",
    "550",
    "Reply code for a local recipient that does not exist.",
)
unknown_relay_recipient_reject_code = intParameter(
    "unknown_relay_recipient_reject_code",
    "550",
    "Reply code for a relay-domain recipient missing from relay_recipient_maps.",
)
unknown_virtual_alias_reject_code = intParameter(
    "unknown_virtual_alias_reject_code",
    "550",
    "Reply code for a virtual alias domain recipient that does not exist.",
)
unknown_virtual_mailbox_reject_code = intParameter(
    "unknown_virtual_mailbox_reject_code",
    "550",
    "Reply code for a virtual mailbox domain recipient that does not exist.",
)
reject_tempfail_action = stringParameter(
    "reject_tempfail_action",
    "defer_if_permit",
    "What to do when a reject-type check fails temporarily.",
    choices=("defer", "defer_if_permit"),
)
unknown_address_tempfail_action = stringParameter(
    "unknown_address_tempfail_action",
    "$reject_tempfail_action",
    "Temporary-failure action for unresolvable address domains.",
    choices=("defer", "defer_if_permit"),
)
unknown_helo_hostname_tempfail_action = stringParameter(
    "unknown_helo_hostname_tempfail_action",
    "$reject_tempfail_action",
    "Temporary-failure action for unresolvable HELO names.",
    choices=("defer", "defer_if_permit"),
)
show_user_unknown_table_name = boolParameter(
    "show_user_unknown_table_name",
    "yes",
    "Name the lookup table in \"User unknown\" rejections.",
)
default_rbl_reply = stringParameter(
    "default_rbl_reply",
    "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}",
    "Template for DNS block list rejections; $rbl_* macros are filled in at reply time.",
)
rbl_reply_maps = mapParameter(
    "rbl_reply_maps",
    "",
    "Per-block-list reply templates overriding default_rbl_reply.",
)


# --- Notification addresses --------------------------------------------------

notify_classes = listParameter(
    "notify_classes",
    "resource, software",
    "Kinds of trouble reported to the postmaster.",
)
# Not a Python identifier, hence the explicit module attribute.
globals()["2bounce_notice_recipient"] = stringParameter(
    "2bounce_notice_recipient",
    "postmaster",
    "Who receives undeliverable bounces.",
)
bounce_notice_recipient = stringParameter(
    "bounce_notice_recipient",
    "postmaster",
    "Who receives postmaster copies of bounces.",
)
delay_notice_recipient = stringParameter(
    "delay_notice_recipient",
    "postmaster",
    "Who receives postmaster copies of delay warnings.",
)
error_notice_recipient = stringParameter(
    "error_notice_recipient",
    "postmaster",
    "Who receives reports of protocol, policy, resource and software trouble.",
)
double_bounce_sender = stringParameter(
    "double_bounce_sender",
    "double-bounce",
    "Sender address of postmaster notifications, which must never bounce again.",
)
empty_address_recipient = stringParameter(
    "empty_address_recipient",
    "MAILER-DAEMON",
    "Where mail for the null sender <> ends up.",
)


# --- Address classes and relay control ---------------------------------------

mydestination = listParameter(
    "mydestination",
    "$myhostname, localhost.$mydomain, localhost",
    "Domains this host is the final destination for.",
)
mynetworks = listParameter(
    "mynetworks",
    _hostdefaults.mynetworks,
    "Trusted client networks; the default lists the networks of local interfaces.",
)
mynetworks_style = stringParameter(
    "mynetworks_style",
    "${{$compatibility_level} <level {2} ? {subnet} : {host}}",
    "How mynetworks is derived when it is not set explicitly.",
    choices=("class", "subnet", "host"),
)
relay_domains = listParameter(
    "relay_domains",
    "${{$compatibility_level} <level {2} ? {$mydestination} : {}}",
    "Domains (and subdomains) this host relays mail to from anyone.",
)
relay_recipient_maps = mapParameter(
    "relay_recipient_maps",
    "",
    "Valid recipients in relay_domains; others are rejected.",
)
permit_mx_backup_networks = listParameter(
    "permit_mx_backup_networks",
    "",
    "Networks whose primary MX may make this host a backup relay.",
)
relayhost = listParameter(
    "relayhost",
    "",
    "Next-hop destination for non-local mail; empty means deliver directly.",
)
relay_transport = stringParameter(
    "relay_transport",
    "relay",
    "Default delivery transport for relay_domains.",
)
default_transport = stringParameter(
    "default_transport",
    "smtp",
    "Delivery transport for remote destinations.",
)
transport_maps = mapParameter(
    "transport_maps",
    "",
    "Lookup tables mapping recipients or domains to transports and next hops.",
)
parent_domain_matches_subdomains = listParameter(
    "parent_domain_matches_subdomains",
    "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps",
    "Features where a domain also matches its subdomains.",
)
local_recipient_maps = mapParameter(
    "local_recipient_maps",
    "proxy:unix:passwd.byname $alias_maps",
    "Valid local recipients; mail to others is rejected at RCPT.",
)
alias_maps = mapParameter(
    "alias_maps",
    "hash:/etc/aliases, nis:mail.aliases",
    "Alias tables, consulted to know which local recipients exist.",
)
virtual_alias_domains = listParameter(
    "virtual_alias_domains",
    "$virtual_alias_maps",
    "Domains whose addresses are all aliases to other addresses.",
)
virtual_alias_maps = mapParameter(
    "virtual_alias_maps",
    "$virtual_maps",
    "Tables aliasing addresses or domains to other addresses.",
)
virtual_maps = mapParameter(
    "virtual_maps",
    "",
    "Pre-2.0 name of virtual_alias_maps, still honoured when set.",
)
virtual_mailbox_domains = listParameter(
    "virtual_mailbox_domains",
    "$virtual_mailbox_maps",
    "Domains delivered to virtual mailboxes.",
)
virtual_mailbox_maps = mapParameter(
    "virtual_mailbox_maps",
    "",
    "Valid recipients in virtual_mailbox_domains.",
)
default_database_type = stringParameter(
    "default_database_type",
    "hash",
    "Lookup table type used when a table name has no type prefix.",
)
anvil_rate_time_unit = timeParameter(
    "anvil_rate_time_unit",
    "60s",
    "Time window over which the client rate limits are counted.",
    minimum=1,
)


# --- Queue and delivery scheduling -------------------------------------------

queue_run_delay = timeParameter(
    "queue_run_delay",
    "300s",
    "How often the deferred queue is scanned.",
    minimum=1,
)
minimal_backoff_time = timeParameter(
    "minimal_backoff_time",
    "300s",
    "Shortest wait before retrying a deferred message.",
    minimum=1,
)
maximal_backoff_time = timeParameter(
    "maximal_backoff_time",
    "4000s",
    "Longest wait before retrying a deferred message.",
    minimum=1,
)
maximal_queue_lifetime = timeParameter(
    "maximal_queue_lifetime",
    "5d",
    "How long a message may stay queued before it is returned; 0 means one attempt.",
    unit="d",
)
bounce_queue_lifetime = timeParameter(
    "bounce_queue_lifetime",
    "5d",
    "How long a bounce may stay queued before it is discarded.",
    unit="d",
)
delay_warning_time = timeParameter(
    "delay_warning_time",
    "0h",
    "When to warn the sender of a delayed message; 0 means never.",
    unit="h",
)
default_destination_concurrency_limit = intParameter(
    "default_destination_concurrency_limit",
    "20",
    "Default most parallel deliveries to one destination.",
)
default_destination_recipient_limit = intParameter(
    "default_destination_recipient_limit",
    "50",
    "Default most recipients per delivery.",
)
initial_destination_concurrency = intParameter(
    "initial_destination_concurrency",
    "5",
    "Parallel deliveries to start with for a new destination.",
    minimum=1,
)
default_destination_rate_delay = timeParameter(
    "default_destination_rate_delay",
    "0s",
    "Default pause between deliveries to one destination.",
)
transport_retry_time = timeParameter(
    "transport_retry_time",
    "60s",
    "Wait before retrying a transport that failed.",
    minimum=1,
)
qmgr_message_active_limit = intParameter(
    "qmgr_message_active_limit",
    "20000",
    "Most messages held in the active queue.",
    minimum=1,
)
qmgr_message_recipient_limit = intParameter(
    "qmgr_message_recipient_limit",
    "20000",
    "Most in-memory recipients in the active queue.",
    minimum=1,
)


# --- SMTP server: greeting, timeouts and deadlines ---------------------------

smtpd_banner = stringParameter(
    "smtpd_banner",
    "$myhostname ESMTP $mail_name",
    "Text after the 220 code of the greeting; must start with $myhostname.",
)
smtpd_timeout = timeParameter(
    "smtpd_timeout",
    "${stress?{10}:{300}}s",
    "Time allowed to receive one request or to send one reply.",
    minimum=1,
)
smtpd_starttls_timeout = timeParameter(
    "smtpd_starttls_timeout",
    "${stress?{10}:{300}}s",
    "Time allowed for the TLS handshake after STARTTLS.",
    minimum=1,
)
smtpd_per_request_deadline = boolParameter(
    "smtpd_per_request_deadline",
    "${smtpd_per_record_deadline?{$smtpd_per_record_deadline}:{${stress?{yes}:{no}}}}",
    "Make smtpd_timeout a budget for a whole request or reply rather than per I/O call.",
)
smtpd_per_record_deadline = stringParameter(
    "smtpd_per_record_deadline",
    "",
    "Pre-3.7 name of smtpd_per_request_deadline; its value is used when set.",
)
smtpd_min_data_rate = intParameter(
    "smtpd_min_data_rate",
    "500",
    "Bytes per second that earn extra time while receiving message content.",
    minimum=1,
)
smtpd_upstream_proxy_protocol = stringParameter(
    "smtpd_upstream_proxy_protocol",
    "",
    "Proxy protocol spoken by an upstream load balancer, or empty.",
    choices=("", "haproxy"),
)
smtpd_upstream_proxy_timeout = timeParameter(
    "smtpd_upstream_proxy_timeout",
    "5s",
    "Time allowed to read the upstream proxy protocol header.",
    minimum=1,
)
smtpd_service_name = stringParameter(
    "smtpd_service_name",
    "smtpd",
    "Service to which postscreen hands off accepted clients.",
)
smtpd_peername_lookup = boolParameter(
    "smtpd_peername_lookup",
    "yes",
    "Look up the client host name in DNS.",
)
smtpd_client_port_logging = boolParameter(
    "smtpd_client_port_logging",
    "no",
    "Also log the client's TCP port.",
)


# --- SMTP server: protocol hardening -----------------------------------------

smtpd_forbidden_commands = listParameter(
    "smtpd_forbidden_commands",
    "CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}",
    "Commands that end the session immediately (non-SMTP traffic such as HTTP).",
)
smtpd_forbid_bare_newline = stringParameter(
    "smtpd_forbid_bare_newline",
    "normalize",
    "How to treat lines ending in a bare LF (SMTP smuggling defense).",
    choices=("no", "normalize", "yes", "reject"),
    note=_BARE_NEWLINE_NOTE,
)
smtpd_forbid_bare_newline_exclusions = listParameter(
    "smtpd_forbid_bare_newline_exclusions",
    "$mynetworks",
    "Clients exempt from smtpd_forbid_bare_newline.",
)
smtpd_forbid_bare_newline_reject_code = intParameter(
    "smtpd_forbid_bare_newline_reject_code",
    "550",
    "Reply code when rejecting bare LF input.",
    minimum=500,
    maximum=599,
)
smtpd_forbid_unauth_pipelining = boolParameter(
    "smtpd_forbid_unauth_pipelining",
    "no",
    "Disconnect clients that send commands ahead of replies when not allowed to.",
)
smtpd_discard_ehlo_keywords = listParameter(
    "smtpd_discard_ehlo_keywords",
    "",
    "EHLO keywords to hide from every client and whose commands are then refused.",
)
smtpd_discard_ehlo_keyword_address_maps = mapParameter(
    "smtpd_discard_ehlo_keyword_address_maps",
    "",
    "Per-client lists of EHLO keywords to hide.",
)
smtpd_command_filter = mapParameter(
    "smtpd_command_filter",
    "",
    "Table that rewrites received commands before they are parsed.",
)
smtpd_noop_commands = listParameter(
    "smtpd_noop_commands",
    "",
    "Extra commands answered with 250 Ok and otherwise ignored.",
)
smtpd_helo_required = boolParameter(
    "smtpd_helo_required",
    "no",
    "Require HELO or EHLO before MAIL FROM.",
)
smtpd_delay_reject = boolParameter(
    "smtpd_delay_reject",
    "yes",
    "Postpone client, HELO and sender rejections until RCPT TO.",
)
smtpd_expansion_filter = stringParameter(
    "smtpd_expansion_filter",
    "\\t\\40!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~",
    "Characters allowed when client data is expanded into reply text.",
)
smtpd_reject_footer = stringParameter(
    "smtpd_reject_footer",
    "",
    "Text appended to every 4xx and 5xx reply.",
)
smtpd_reject_footer_maps = mapParameter(
    "smtpd_reject_footer_maps",
    "",
    "Per-reply footers chosen by reply text.",
)
smtpd_null_access_lookup_key = stringParameter(
    "smtpd_null_access_lookup_key",
    "<>",
    "Key used to look up the null sender in access tables.",
)
smtpd_log_access_permit_actions = listParameter(
    "smtpd_log_access_permit_actions",
    "",
    "Permit actions that are logged like rejections.",
)
smtpd_history_flush_threshold = intParameter(
    "smtpd_history_flush_threshold",
    "100",
    "Command history length that triggers a flush to the postmaster report.",
    minimum=1,
)


# --- SMTP server: error and resource limits ----------------------------------

smtpd_soft_error_limit = intParameter(
    "smtpd_soft_error_limit",
    "10",
    "Errors after which each reply is delayed by smtpd_error_sleep_time.",
    minimum=1,
)
smtpd_hard_error_limit = intParameter(
    "smtpd_hard_error_limit",
    "${stress?{1}:{20}}",
    "Errors after which the client is disconnected.",
    minimum=1,
)
smtpd_error_sleep_time = timeParameter(
    "smtpd_error_sleep_time",
    "1s",
    "Delay before replying once the soft error limit is reached.",
)
smtpd_junk_command_limit = intParameter(
    "smtpd_junk_command_limit",
    "${stress?{1}:{100}}",
    "NOOP, RSET, VRFY, ETRN, HELO or EHLO commands allowed before each counts as an error.",
    minimum=1,
)
smtpd_recipient_limit = intParameter(
    "smtpd_recipient_limit",
    "1000",
    "Most recipients accepted per message.",
    minimum=1,
)
smtpd_recipient_overshoot_limit = intParameter(
    "smtpd_recipient_overshoot_limit",
    "1000",
    "Excess recipients tolerated before each one counts as an error.",
    minimum=1,
)


# --- SMTP server: per-client rate and concurrency limits ---------------------

smtpd_client_connection_count_limit = intParameter(
    "smtpd_client_connection_count_limit",
    "50",
    "Most simultaneous connections per client to one service; 0 means no limit.",
)
smtpd_client_connection_rate_limit = intParameter(
    "smtpd_client_connection_rate_limit",
    "0",
    "Most connections per client per anvil_rate_time_unit; 0 means no limit.",
)
smtpd_client_message_rate_limit = intParameter(
    "smtpd_client_message_rate_limit",
    "0",
    "Most MAIL FROM commands per client per time unit; 0 means no limit.",
)
smtpd_client_recipient_rate_limit = intParameter(
    "smtpd_client_recipient_rate_limit",
    "0",
    "Most RCPT TO commands per client per time unit; 0 means no limit.",
)
smtpd_client_new_tls_session_rate_limit = intParameter(
    "smtpd_client_new_tls_session_rate_limit",
    "0",
    "Most new TLS sessions per client per time unit; 0 means no limit.",
)
smtpd_client_auth_rate_limit = intParameter(
    "smtpd_client_auth_rate_limit",
    "0",
    "Most AUTH commands per client per time unit; 0 means no limit.",
)
smtpd_client_event_limit_exceptions = listParameter(
    "smtpd_client_event_limit_exceptions",
    "${smtpd_client_connection_limit_exceptions:$mynetworks}",
    "Clients exempt from all per-client rate and concurrency limits.",
)
smtpd_client_connection_limit_exceptions = listParameter(
    "smtpd_client_connection_limit_exceptions",
    "",
    "Pre-2.9 name of smtpd_client_event_limit_exceptions; its value is used when set.",
)


# --- SMTP server: access restrictions ----------------------------------------

smtpd_client_restrictions = listParameter(
    "smtpd_client_restrictions",
    "",
    "Checks applied to the client's name and address.",
)
smtpd_helo_restrictions = listParameter(
    "smtpd_helo_restrictions",
    "",
    "Checks applied to the HELO or EHLO name.",
)
smtpd_sender_restrictions = listParameter(
    "smtpd_sender_restrictions",
    "",
    "Checks applied to the MAIL FROM address.",
)
smtpd_relay_restrictions = listParameter(
    "smtpd_relay_restrictions",
    "${{$compatibility_level} <level {1} ? {} : {permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination}}",
    "Relay checks applied at RCPT TO, before smtpd_recipient_restrictions.",
)
smtpd_recipient_restrictions = listParameter(
    "smtpd_recipient_restrictions",
    "",
    "Checks applied at RCPT TO for spam and recipient policy.",
)
smtpd_relay_before_recipient_restrictions = boolParameter(
    "smtpd_relay_before_recipient_restrictions",
    "${{$compatibility_level} <level {3.6} ? {no} : {yes}}",
    "Evaluate relay checks before recipient checks.",
)
smtpd_data_restrictions = listParameter(
    "smtpd_data_restrictions",
    "",
    "Checks applied when the client sends DATA.",
)
smtpd_end_of_data_restrictions = listParameter(
    "smtpd_end_of_data_restrictions",
    "",
    "Checks applied after the message content is received.",
)
smtpd_etrn_restrictions = listParameter(
    "smtpd_etrn_restrictions",
    "",
    "Checks applied to ETRN requests.",
)
smtpd_restriction_classes = listParameter(
    "smtpd_restriction_classes",
    "",
    "Names of user-defined restriction groups usable in access tables.",
)
smtpd_reject_unlisted_recipient = boolParameter(
    "smtpd_reject_unlisted_recipient",
    "yes",
    "Reject recipients not known in their address class, even without an explicit restriction.",
)
smtpd_reject_unlisted_sender = boolParameter(
    "smtpd_reject_unlisted_sender",
    "no",
    "Reject senders not known in their address class, even without an explicit restriction.",
)
smtpd_sender_login_maps = mapParameter(
    "smtpd_sender_login_maps",
    "",
    "Owners (SASL logins) of sender addresses.",
)


# --- SMTP server: SASL authentication ----------------------------------------

smtpd_sasl_auth_enable = boolParameter(
    "smtpd_sasl_auth_enable",
    "no",
    "Offer SASL authentication (AUTH).",
)
smtpd_sasl_type = stringParameter(
    "smtpd_sasl_type",
    "cyrus",
    "SASL implementation used by the server.",
)
smtpd_sasl_path = stringParameter(
    "smtpd_sasl_path",
    "smtpd",
    "Location of the SASL server (socket or application name).",
)
smtpd_sasl_service = stringParameter(
    "smtpd_sasl_service",
    "smtp",
    "Service name passed to the SASL implementation.",
)
smtpd_sasl_local_domain = stringParameter(
    "smtpd_sasl_local_domain",
    "",
    "SASL realm for authentication.",
)
smtpd_sasl_security_options = listParameter(
    "smtpd_sasl_security_options",
    "noanonymous",
    "Mechanism properties required on unencrypted sessions.",
)
smtpd_sasl_tls_security_options = listParameter(
    "smtpd_sasl_tls_security_options",
    "$smtpd_sasl_security_options",
    "Mechanism properties required on TLS sessions.",
)
smtpd_sasl_mechanism_filter = listParameter(
    "smtpd_sasl_mechanism_filter",
    "!external, static:rest",
    "Which SASL mechanisms may be offered.",
)
smtpd_sasl_exceptions_networks = listParameter(
    "smtpd_sasl_exceptions_networks",
    "",
    "Clients that are not offered AUTH.",
)
smtpd_sasl_authenticated_header = boolParameter(
    "smtpd_sasl_authenticated_header",
    "no",
    "Record the SASL login name in the Received: header.",
)
smtpd_sasl_response_limit = intParameter(
    "smtpd_sasl_response_limit",
    "12288",
    "Longest AUTH response line accepted from a client.",
    minimum=12288,
)


# --- SMTP server: TLS --------------------------------------------------------

smtpd_tls_security_level = stringParameter(
    "smtpd_tls_security_level",
    "",
    "Server TLS policy; empty falls back to smtpd_use_tls and smtpd_enforce_tls.",
    choices=("", "none", "may", "encrypt", "fingerprint", "verify", "secure"),
)
smtpd_use_tls = boolParameter("smtpd_use_tls", "no", "Obsolete: announce STARTTLS (level may).")
smtpd_enforce_tls = boolParameter(
    "smtpd_enforce_tls",
    "no",
    "Obsolete: require STARTTLS (level encrypt).",
)
smtpd_tls_wrappermode = boolParameter(
    "smtpd_tls_wrappermode",
    "no",
    "Start TLS immediately on connect (implicit TLS, port 465).",
)
smtpd_tls_auth_only = boolParameter("smtpd_tls_auth_only", "no", "Offer AUTH only after STARTTLS.")
smtpd_tls_cert_file = stringParameter(
    "smtpd_tls_cert_file",
    "",
    "PEM file with the server RSA certificate.",
)
smtpd_tls_key_file = stringParameter(
    "smtpd_tls_key_file",
    "$smtpd_tls_cert_file",
    "PEM file with the server RSA private key.",
)
smtpd_tls_chain_files = listParameter(
    "smtpd_tls_chain_files",
    "",
    "PEM files each holding a private key followed by its certificate chain.",
)
smtpd_tls_eccert_file = stringParameter(
    "smtpd_tls_eccert_file",
    "",
    "PEM file with the server ECDSA certificate.",
)
smtpd_tls_eckey_file = stringParameter(
    "smtpd_tls_eckey_file",
    "$smtpd_tls_eccert_file",
    "PEM file with the server ECDSA private key.",
)
smtpd_tls_dcert_file = stringParameter(
    "smtpd_tls_dcert_file",
    "",
    "PEM file with the server DSA certificate.",
)
smtpd_tls_dkey_file = stringParameter(
    "smtpd_tls_dkey_file",
    "$smtpd_tls_dcert_file",
    "PEM file with the server DSA private key.",
)
smtpd_tls_CAfile = stringParameter(
    "smtpd_tls_CAfile",
    "",
    "PEM file of CA certificates for verifying client certificates.",
)
smtpd_tls_CApath = stringParameter(
    "smtpd_tls_CApath",
    "",
    "Directory of CA certificates for verifying client certificates.",
)
smtpd_tls_ask_ccert = boolParameter("smtpd_tls_ask_ccert", "no", "Ask clients for a certificate.")
smtpd_tls_req_ccert = boolParameter(
    "smtpd_tls_req_ccert",
    "no",
    "Require a verified client certificate (with level encrypt).",
)
smtpd_tls_ccert_verifydepth = intParameter(
    "smtpd_tls_ccert_verifydepth",
    "9",
    "Longest client certificate chain verified.",
)
smtpd_tls_protocols = listParameter(
    "smtpd_tls_protocols",
    ">=TLSv1",
    "TLS protocol versions allowed for opportunistic TLS.",
)
smtpd_tls_mandatory_protocols = listParameter(
    "smtpd_tls_mandatory_protocols",
    ">=TLSv1",
    "TLS protocol versions allowed when TLS is required.",
)
smtpd_tls_ciphers = stringParameter(
    "smtpd_tls_ciphers",
    "medium",
    "Cipher grade for opportunistic TLS.",
    choices=("export", "low", "medium", "high", "null"),
)
smtpd_tls_mandatory_ciphers = stringParameter(
    "smtpd_tls_mandatory_ciphers",
    "medium",
    "Cipher grade when TLS is required.",
    choices=("export", "low", "medium", "high", "null"),
)
smtpd_tls_exclude_ciphers = listParameter(
    "smtpd_tls_exclude_ciphers",
    "",
    "Ciphers removed from every server cipher list.",
)
smtpd_tls_mandatory_exclude_ciphers = listParameter(
    "smtpd_tls_mandatory_exclude_ciphers",
    "",
    "Ciphers removed when TLS is required.",
)
smtpd_tls_eecdh_grade = stringParameter(
    "smtpd_tls_eecdh_grade",
    "auto",
    "Elliptic-curve key exchange strength.",
    choices=("none", "strong", "ultra", "auto"),
)
smtpd_tls_dh1024_param_file = stringParameter(
    "smtpd_tls_dh1024_param_file",
    "",
    "File with custom finite-field DH parameters.",
)
smtpd_tls_dh512_param_file = stringParameter(
    "smtpd_tls_dh512_param_file",
    "",
    "Obsolete file with export-grade DH parameters.",
)
smtpd_tls_fingerprint_digest = stringParameter(
    "smtpd_tls_fingerprint_digest",
    "${{$compatibility_level} <level {3.6} ? {md5} : {sha256}}",
    "Digest used for client certificate fingerprints.",
)
smtpd_tls_loglevel = intParameter("smtpd_tls_loglevel", "0", "How much TLS activity to log.")
smtpd_tls_received_header = boolParameter(
    "smtpd_tls_received_header",
    "no",
    "Record TLS protocol and cipher in the Received: header.",
)
smtpd_tls_session_cache_database = mapParameter(
    "smtpd_tls_session_cache_database",
    "",
    "Table holding the server TLS session cache; empty disables it.",
)
smtpd_tls_session_cache_timeout = timeParameter(
    "smtpd_tls_session_cache_timeout",
    "3600s",
    "How long cached server TLS sessions stay valid.",
)
smtpd_tls_always_issue_session_ids = boolParameter(
    "smtpd_tls_always_issue_session_ids",
    "yes",
    "Issue session ids even without a session cache.",
)


# --- postscreen --------------------------------------------------------------

postscreen_access_list = listParameter(
    "postscreen_access_list",
    "permit_mynetworks",
    "Permanent allow and deny list checked first for each client.",
)
postscreen_allowlist_interfaces = listParameter(
    "postscreen_allowlist_interfaces",
    "${postscreen_whitelist_interfaces?{$postscreen_whitelist_interfaces}:{static:all}}",
    "Local addresses on which clients may earn allowlist status.",
)
postscreen_whitelist_interfaces = listParameter(
    "postscreen_whitelist_interfaces",
    "",
    "Pre-3.6 name of postscreen_allowlist_interfaces; its value is used when set.",
)
postscreen_denylist_action = stringParameter(
    "postscreen_denylist_action",
    "${postscreen_blacklist_action?{$postscreen_blacklist_action}:{ignore}}",
    "Action for clients denied by postscreen_access_list.",
    choices=("ignore", "enforce", "drop"),
)
postscreen_blacklist_action = stringParameter(
    "postscreen_blacklist_action",
    "",
    "Pre-3.6 name of postscreen_denylist_action; its value is used when set.",
)
postscreen_bare_newline_enable = boolParameter(
    "postscreen_bare_newline_enable",
    "no",
    "Run the after-greeting bare-LF test.",
)
postscreen_bare_newline_action = stringParameter(
    "postscreen_bare_newline_action",
    "ignore",
    "Action for clients that send a bare LF.",
    choices=("ignore", "enforce", "drop"),
)
postscreen_bare_newline_ttl = timeParameter(
    "postscreen_bare_newline_ttl",
    "30d",
    "How long a pass of the bare-LF test is remembered.",
    unit="d",
    minimum=1,
)
postscreen_cache_map = mapParameter(
    "postscreen_cache_map",
    "btree:$data_directory/postscreen_cache",
    "Table holding the temporary allowlist cache.",
)
postscreen_cache_retention_time = timeParameter(
    "postscreen_cache_retention_time",
    "7d",
    "How long an expired cache entry is kept before removal.",
    unit="d",
    minimum=1,
)
postscreen_cache_cleanup_interval = timeParameter(
    "postscreen_cache_cleanup_interval",
    "12h",
    "How often the cache is cleaned; 0 disables cleaning.",
    unit="h",
)
postscreen_client_connection_count_limit = intParameter(
    "postscreen_client_connection_count_limit",
    "$smtpd_client_connection_count_limit",
    "Most simultaneous connections per client; 0 means no limit.",
)
postscreen_command_count_limit = intParameter(
    "postscreen_command_count_limit",
    "20",
    "Most commands in one session with the built-in SMTP engine.",
    minimum=1,
)
postscreen_command_filter = mapParameter(
    "postscreen_command_filter",
    "",
    "Table that rewrites commands seen by the built-in SMTP engine.",
)
postscreen_command_time_limit = timeParameter(
    "postscreen_command_time_limit",
    "${stress?{10}:{300}}s",
    "Time allowed for one command with the built-in SMTP engine.",
    minimum=1,
)
postscreen_disable_vrfy_command = boolParameter(
    "postscreen_disable_vrfy_command",
    "$disable_vrfy_command",
    "Refuse VRFY in the built-in SMTP engine.",
)
postscreen_discard_ehlo_keyword_address_maps = mapParameter(
    "postscreen_discard_ehlo_keyword_address_maps",
    "$smtpd_discard_ehlo_keyword_address_maps",
    "Per-client EHLO keywords hidden by the built-in SMTP engine.",
)
postscreen_discard_ehlo_keywords = listParameter(
    "postscreen_discard_ehlo_keywords",
    "$smtpd_discard_ehlo_keywords",
    "EHLO keywords hidden by the built-in SMTP engine.",
)
postscreen_dnsbl_action = stringParameter(
    "postscreen_dnsbl_action",
    "ignore",
    "Action for clients whose DNSBL score reaches the threshold.",
    choices=("ignore", "enforce", "drop"),
)
postscreen_dnsbl_allowlist_threshold = intParameter(
    "postscreen_dnsbl_allowlist_threshold",
    "${postscreen_dnsbl_whitelist_threshold?{$postscreen_dnsbl_whitelist_threshold}:{0}}",
    "Score at or below which a client skips the remaining tests.",
)
postscreen_dnsbl_whitelist_threshold = stringParameter(
    "postscreen_dnsbl_whitelist_threshold",
    "",
    "Pre-3.6 name of postscreen_dnsbl_allowlist_threshold; its value is used when set.",
)
postscreen_dnsbl_max_ttl = timeParameter(
    "postscreen_dnsbl_max_ttl",
    "${postscreen_dnsbl_ttl?{$postscreen_dnsbl_ttl}:{1}}h",
    "Longest time a DNSBL result is cached.",
    unit="h",
    minimum=1,
)
postscreen_dnsbl_ttl = stringParameter(
    "postscreen_dnsbl_ttl",
    "",
    "Pre-3.1 name of postscreen_dnsbl_max_ttl; its value is used when set.",
)
postscreen_dnsbl_min_ttl = timeParameter(
    "postscreen_dnsbl_min_ttl",
    "60s",
    "Shortest time a DNSBL result is cached.",
    minimum=1,
)
postscreen_dnsbl_reply_map = mapParameter(
    "postscreen_dnsbl_reply_map",
    "",
    "Block list names to show in rejections instead of the real ones.",
)
postscreen_dnsbl_sites = listParameter(
    "postscreen_dnsbl_sites",
    "",
    "DNS block and allow lists with weights and optional reply filters.",
)
postscreen_dnsbl_threshold = intParameter(
    "postscreen_dnsbl_threshold",
    "1",
    "Combined DNSBL score that triggers postscreen_dnsbl_action.",
)
postscreen_dnsbl_timeout = timeParameter(
    "postscreen_dnsbl_timeout",
    "10s",
    "Time to wait for DNSBL answers.",
    minimum=1,
)
postscreen_enforce_tls = boolParameter(
    "postscreen_enforce_tls",
    "$smtpd_enforce_tls",
    "Obsolete: require STARTTLS in the built-in SMTP engine.",
)
postscreen_use_tls = boolParameter(
    "postscreen_use_tls",
    "$smtpd_use_tls",
    "Obsolete: offer STARTTLS in the built-in SMTP engine.",
)
postscreen_tls_security_level = stringParameter(
    "postscreen_tls_security_level",
    "$smtpd_tls_security_level",
    "TLS policy of the built-in SMTP engine.",
    choices=("", "none", "may", "encrypt", "fingerprint", "verify", "secure"),
)
postscreen_expansion_filter = stringParameter(
    "postscreen_expansion_filter",
    "$smtpd_expansion_filter",
    "Characters allowed when client data is expanded into reply text.",
)
postscreen_forbidden_commands = listParameter(
    "postscreen_forbidden_commands",
    "$smtpd_forbidden_commands",
    "Commands that count as non-SMTP in the built-in SMTP engine.",
)
postscreen_greet_action = stringParameter(
    "postscreen_greet_action",
    "ignore",
    "Action for clients that talk before the greeting.",
    choices=("ignore", "enforce", "drop"),
)
postscreen_greet_banner = stringParameter(
    "postscreen_greet_banner",
    "$smtpd_banner",
    "Text of the first part of the multi-line teaser greeting; empty disables it.",
)
postscreen_greet_ttl = timeParameter(
    "postscreen_greet_ttl",
    "1d",
    "How long a pass of the pre-greeting test is remembered.",
    unit="d",
    minimum=1,
)
postscreen_greet_wait = timeParameter(
    "postscreen_greet_wait",
    "${stress?{2}:{6}}s",
    "How long to watch for early talkers before the greeting.",
    minimum=1,
)
postscreen_helo_required = boolParameter(
    "postscreen_helo_required",
    "$smtpd_helo_required",
    "Require HELO or EHLO in the built-in SMTP engine.",
)
postscreen_non_smtp_command_enable = boolParameter(
    "postscreen_non_smtp_command_enable",
    "no",
    "Run the after-greeting non-SMTP command test.",
)
postscreen_non_smtp_command_action = stringParameter(
    "postscreen_non_smtp_command_action",
    "drop",
    "Action for clients that send non-SMTP commands.",
    choices=("ignore", "enforce", "drop"),
)
postscreen_non_smtp_command_ttl = timeParameter(
    "postscreen_non_smtp_command_ttl",
    "30d",
    "How long a pass of the non-SMTP command test is remembered.",
    unit="d",
    minimum=1,
)
postscreen_pipelining_enable = boolParameter(
    "postscreen_pipelining_enable",
    "no",
    "Run the after-greeting command pipelining test.",
)
postscreen_pipelining_action = stringParameter(
    "postscreen_pipelining_action",
    "enforce",
    "Action for clients that pipeline without permission.",
    choices=("ignore", "enforce", "drop"),
)
postscreen_pipelining_ttl = timeParameter(
    "postscreen_pipelining_ttl",
    "30d",
    "How long a pass of the pipelining test is remembered.",
    unit="d",
    minimum=1,
)
postscreen_post_queue_limit = intParameter(
    "postscreen_post_queue_limit",
    "$default_process_limit",
    "Most clients waiting for a free SMTP server process.",
    minimum=5,
)
postscreen_pre_queue_limit = intParameter(
    "postscreen_pre_queue_limit",
    "$default_process_limit",
    "Most clients being screened at once; 90% of it enters stress mode.",
    minimum=10,
)
postscreen_reject_footer = stringParameter(
    "postscreen_reject_footer",
    "$smtpd_reject_footer",
    "Text appended to postscreen's 4xx and 5xx replies.",
)
postscreen_reject_footer_maps = mapParameter(
    "postscreen_reject_footer_maps",
    "$smtpd_reject_footer_maps",
    "Per-reply footers for postscreen's replies.",
)
postscreen_upstream_proxy_protocol = stringParameter(
    "postscreen_upstream_proxy_protocol",
    "",
    "Proxy protocol spoken by an upstream load balancer, or empty.",
    choices=("", "haproxy"),
)
postscreen_upstream_proxy_timeout = timeParameter(
    "postscreen_upstream_proxy_timeout",
    "5s",
    "Time allowed to read the upstream proxy protocol header.",
    minimum=1,
)
postscreen_watchdog_timeout = timeParameter(
    "postscreen_watchdog_timeout",
    "10s",
    "Time after which a stuck postscreen process terminates.",
    minimum=10,
)
dnsblog_reply_delay = timeParameter(
    "dnsblog_reply_delay",
    "0s",
    "Artificial delay added to DNSBL answers, for testing.",
)


# --- SMTP client -------------------------------------------------------------

smtp_connect_timeout = timeParameter(
    "smtp_connect_timeout",
    "30s",
    "Time allowed to complete a TCP connection; 0 leaves it to the kernel.",
)
smtp_helo_timeout = timeParameter(
    "smtp_helo_timeout",
    "300s",
    "Time allowed for the greeting and the HELO or EHLO reply.",
    minimum=1,
)
smtp_starttls_timeout = timeParameter(
    "smtp_starttls_timeout",
    "300s",
    "Time allowed for the STARTTLS reply and TLS handshake.",
    minimum=1,
)
smtp_xforward_timeout = timeParameter(
    "smtp_xforward_timeout",
    "300s",
    "Time allowed for the XFORWARD reply.",
    minimum=1,
)
smtp_mail_timeout = timeParameter(
    "smtp_mail_timeout",
    "300s",
    "Time allowed for the MAIL FROM reply.",
    minimum=1,
)
smtp_rcpt_timeout = timeParameter(
    "smtp_rcpt_timeout",
    "300s",
    "Time allowed for each RCPT TO reply.",
    minimum=1,
)
smtp_data_init_timeout = timeParameter(
    "smtp_data_init_timeout",
    "120s",
    "Time allowed for the DATA reply.",
    minimum=1,
)
smtp_data_xfer_timeout = timeParameter(
    "smtp_data_xfer_timeout",
    "180s",
    "Time allowed to send one piece of message content.",
    minimum=1,
)
smtp_data_done_timeout = timeParameter(
    "smtp_data_done_timeout",
    "600s",
    "Time allowed for the reply after the end of content.",
    minimum=1,
)
smtp_rset_timeout = timeParameter(
    "smtp_rset_timeout",
    "20s",
    "Time allowed for the RSET reply.",
    minimum=1,
)
smtp_quit_timeout = timeParameter(
    "smtp_quit_timeout",
    "300s",
    "Time allowed for the QUIT reply.",
    minimum=1,
)
smtp_per_request_deadline = boolParameter(
    "smtp_per_request_deadline",
    "${smtp_per_record_deadline?{$smtp_per_record_deadline}:{no}}",
    "Make each client timeout a budget for a whole request or reply.",
)
smtp_per_record_deadline = stringParameter(
    "smtp_per_record_deadline",
    "",
    "Pre-3.7 name of smtp_per_request_deadline; its value is used when set.",
)
smtp_min_data_rate = intParameter(
    "smtp_min_data_rate",
    "500",
    "Bytes per second that earn extra time while sending message content.",
    minimum=1,
)
smtp_helo_name = stringParameter("smtp_helo_name", "$myhostname", "Name sent in HELO or EHLO.")
smtp_bind_address = stringParameter(
    "smtp_bind_address",
    "",
    "Local IPv4 address for outbound connections.",
)
smtp_bind_address6 = stringParameter(
    "smtp_bind_address6",
    "",
    "Local IPv6 address for outbound connections.",
)
smtp_bind_address_enforce = boolParameter(
    "smtp_bind_address_enforce",
    "no",
    "Defer delivery when the bind address cannot be used.",
)
smtp_tcp_port = stringParameter("smtp_tcp_port", "smtp", "Default server port for outbound SMTP.")
smtp_address_preference = stringParameter(
    "smtp_address_preference",
    "any",
    "Which address family to try first.",
    choices=("any", "ipv4", "ipv6"),
)
smtp_host_lookup = listParameter(
    "smtp_host_lookup",
    "dns",
    "How server addresses are found: dns, native or both.",
)
smtp_mx_address_limit = intParameter(
    "smtp_mx_address_limit",
    "5",
    "Most MX addresses tried per delivery; 0 means no limit.",
)
smtp_mx_session_limit = intParameter(
    "smtp_mx_session_limit",
    "2",
    "Most sessions per delivery attempt; 0 means no limit.",
)
smtp_randomize_addresses = boolParameter(
    "smtp_randomize_addresses",
    "yes",
    "Shuffle equal-preference server addresses.",
)
smtp_always_send_ehlo = boolParameter("smtp_always_send_ehlo", "yes", "Always start with EHLO.")
smtp_never_send_ehlo = boolParameter("smtp_never_send_ehlo", "no", "Never send EHLO, only HELO.")
smtp_skip_5xx_greeting = boolParameter(
    "smtp_skip_5xx_greeting",
    "yes",
    "Try the next server after a 5xx greeting.",
)
smtp_skip_quit_response = boolParameter(
    "smtp_skip_quit_response",
    "yes",
    "Do not wait for the QUIT reply.",
)
smtp_line_length_limit = intParameter(
    "smtp_line_length_limit",
    "998",
    "Longest line sent before folding; 0 means no limit.",
)
smtp_discard_ehlo_keywords = listParameter(
    "smtp_discard_ehlo_keywords",
    "",
    "Server EHLO keywords to ignore.",
)
smtp_discard_ehlo_keyword_address_maps = mapParameter(
    "smtp_discard_ehlo_keyword_address_maps",
    "",
    "Per-server EHLO keywords to ignore.",
)
smtp_fallback_relay = listParameter(
    "smtp_fallback_relay",
    "$fallback_relay",
    "Next hops to try when the normal destination fails.",
)
fallback_relay = listParameter(
    "fallback_relay",
    "",
    "Pre-2.3 name of smtp_fallback_relay; its value is used when set.",
)
smtp_connection_cache_destinations = listParameter(
    "smtp_connection_cache_destinations",
    "",
    "Destinations whose connections are always cached.",
)
smtp_connection_cache_on_demand = boolParameter(
    "smtp_connection_cache_on_demand",
    "yes",
    "Cache connections to destinations with a backlog.",
)
smtp_connection_cache_time_limit = timeParameter(
    "smtp_connection_cache_time_limit",
    "2s",
    "How long an idle cached connection is kept.",
    minimum=1,
)
smtp_connection_reuse_count_limit = intParameter(
    "smtp_connection_reuse_count_limit",
    "0",
    "Most times a connection is reused; 0 means no limit.",
)
smtp_connection_reuse_time_limit = timeParameter(
    "smtp_connection_reuse_time_limit",
    "300s",
    "How long after connecting a connection may still be reused.",
    minimum=1,
)
smtp_sasl_auth_enable = boolParameter(
    "smtp_sasl_auth_enable",
    "no",
    "Authenticate to servers with SASL.",
)
smtp_sasl_password_maps = mapParameter(
    "smtp_sasl_password_maps",
    "",
    "Credentials per server or next hop.",
)
smtp_sasl_mechanism_filter = listParameter(
    "smtp_sasl_mechanism_filter",
    "",
    "Server SASL mechanisms the client is willing to use.",
)
smtp_sasl_security_options = listParameter(
    "smtp_sasl_security_options",
    "noplaintext, noanonymous",
    "Mechanism properties required on unencrypted sessions.",
)
smtp_sasl_tls_security_options = listParameter(
    "smtp_sasl_tls_security_options",
    "$smtp_sasl_security_options",
    "Mechanism properties required on TLS sessions.",
)
smtp_sasl_tls_verified_security_options = listParameter(
    "smtp_sasl_tls_verified_security_options",
    "$smtp_sasl_tls_security_options",
    "Mechanism properties required on verified TLS sessions.",
)
smtp_sasl_type = stringParameter(
    "smtp_sasl_type",
    "cyrus",
    "SASL implementation used by the client.",
)
smtp_sasl_auth_soft_bounce = boolParameter(
    "smtp_sasl_auth_soft_bounce",
    "yes",
    "Defer instead of bouncing after an authentication failure.",
)
smtp_sasl_auth_cache_name = mapParameter(
    "smtp_sasl_auth_cache_name",
    "",
    "Table remembering failed authentications; empty disables it.",
)
smtp_sasl_auth_cache_time = timeParameter(
    "smtp_sasl_auth_cache_time",
    "90d",
    "How long a failed authentication is remembered.",
    unit="d",
)


# --- SMTP client: TLS --------------------------------------------------------

smtp_tls_security_level = stringParameter(
    "smtp_tls_security_level",
    "",
    "Default client TLS policy.",
    choices=("", "none", "may", "encrypt", "dane", "dane-only", "fingerprint", "verify", "secure"),
)
smtp_use_tls = boolParameter("smtp_use_tls", "no", "Obsolete: use TLS when offered (level may).")
smtp_enforce_tls = boolParameter(
    "smtp_enforce_tls",
    "no",
    "Obsolete: require TLS (level encrypt).",
)
smtp_tls_enforce_peername = boolParameter(
    "smtp_tls_enforce_peername",
    "yes",
    "Obsolete: with smtp_enforce_tls, also verify the server name.",
)
smtp_tls_wrappermode = boolParameter(
    "smtp_tls_wrappermode",
    "no",
    "Use implicit TLS from connect instead of STARTTLS.",
)
smtp_tls_CAfile = stringParameter(
    "smtp_tls_CAfile",
    "",
    "PEM file of CA certificates for verifying servers.",
)
smtp_tls_CApath = stringParameter(
    "smtp_tls_CApath",
    "",
    "Directory of CA certificates for verifying servers.",
)
smtp_tls_cert_file = stringParameter(
    "smtp_tls_cert_file",
    "",
    "PEM file with the client RSA certificate.",
)
smtp_tls_key_file = stringParameter(
    "smtp_tls_key_file",
    "$smtp_tls_cert_file",
    "PEM file with the client RSA private key.",
)
smtp_tls_chain_files = listParameter(
    "smtp_tls_chain_files",
    "",
    "PEM files each holding a private key followed by its certificate chain.",
)
smtp_tls_eccert_file = stringParameter(
    "smtp_tls_eccert_file",
    "",
    "PEM file with the client ECDSA certificate.",
)
smtp_tls_eckey_file = stringParameter(
    "smtp_tls_eckey_file",
    "$smtp_tls_eccert_file",
    "PEM file with the client ECDSA private key.",
)
smtp_tls_dcert_file = stringParameter(
    "smtp_tls_dcert_file",
    "",
    "PEM file with the client DSA certificate.",
)
smtp_tls_dkey_file = stringParameter(
    "smtp_tls_dkey_file",
    "$smtp_tls_dcert_file",
    "PEM file with the client DSA private key.",
)
smtp_tls_protocols = listParameter(
    "smtp_tls_protocols",
    ">=TLSv1",
    "TLS protocol versions allowed for opportunistic TLS.",
)
smtp_tls_mandatory_protocols = listParameter(
    "smtp_tls_mandatory_protocols",
    ">=TLSv1",
    "TLS protocol versions allowed when TLS is required.",
)
smtp_tls_ciphers = stringParameter(
    "smtp_tls_ciphers",
    "medium",
    "Cipher grade for opportunistic TLS.",
    choices=("export", "low", "medium", "high", "null"),
)
smtp_tls_mandatory_ciphers = stringParameter(
    "smtp_tls_mandatory_ciphers",
    "medium",
    "Cipher grade when TLS is required.",
    choices=("export", "low", "medium", "high", "null"),
)
smtp_tls_exclude_ciphers = listParameter(
    "smtp_tls_exclude_ciphers",
    "",
    "Ciphers removed from every client cipher list.",
)
smtp_tls_mandatory_exclude_ciphers = listParameter(
    "smtp_tls_mandatory_exclude_ciphers",
    "",
    "Ciphers removed when TLS is required.",
)
smtp_tls_verify_cert_match = listParameter(
    "smtp_tls_verify_cert_match",
    "hostname",
    "Names a server certificate must match at level verify.",
)
smtp_tls_secure_cert_match = listParameter(
    "smtp_tls_secure_cert_match",
    "nexthop, dot-nexthop",
    "Names a server certificate must match at level secure.",
)
smtp_tls_fingerprint_cert_match = listParameter(
    "smtp_tls_fingerprint_cert_match",
    "",
    "Certificate or key fingerprints accepted at level fingerprint.",
)
smtp_tls_fingerprint_digest = stringParameter(
    "smtp_tls_fingerprint_digest",
    "${{$compatibility_level} <level {3.6} ? {md5} : {sha256}}",
    "Digest used for server certificate fingerprints.",
)
smtp_tls_dane_insecure_mx_policy = stringParameter(
    "smtp_tls_dane_insecure_mx_policy",
    "${{$smtp_tls_security_level} == {dane} ? {dane} : {may}}",
    "TLS policy for DANE destinations whose MX lookup is not DNSSEC-signed.",
)
smtp_tls_force_insecure_host_tlsa_lookup = boolParameter(
    "smtp_tls_force_insecure_host_tlsa_lookup",
    "no",
    "Look up TLSA records even for insecurely found hosts.",
)
smtp_tls_trust_anchor_file = listParameter(
    "smtp_tls_trust_anchor_file",
    "",
    "PEM files of trust anchors for level verify or secure.",
)
smtp_tls_scert_verifydepth = intParameter(
    "smtp_tls_scert_verifydepth",
    "9",
    "Longest server certificate chain verified.",
)
smtp_tls_servername = stringParameter(
    "smtp_tls_servername",
    "",
    "SNI name to send; empty sends none.",
)
smtp_tls_policy_maps = mapParameter("smtp_tls_policy_maps", "", "Per-destination TLS policies.")
smtp_tls_per_site = mapParameter("smtp_tls_per_site", "", "Obsolete per-destination TLS settings.")
smtp_tls_loglevel = intParameter("smtp_tls_loglevel", "0", "How much client TLS activity to log.")
smtp_tls_note_starttls_offer = boolParameter(
    "smtp_tls_note_starttls_offer",
    "no",
    "Log servers that offer STARTTLS when it is not used.",
)
smtp_tls_block_early_mail_reply = boolParameter(
    "smtp_tls_block_early_mail_reply",
    "no",
    "Detect and block replies injected before the TLS handshake completes.",
)
smtp_tls_connection_reuse = boolParameter(
    "smtp_tls_connection_reuse",
    "no",
    "Reuse TLS connections through the TLS proxy.",
)
smtp_tls_session_cache_database = mapParameter(
    "smtp_tls_session_cache_database",
    "",
    "Table holding the client TLS session cache; empty disables it.",
)
smtp_tls_session_cache_timeout = timeParameter(
    "smtp_tls_session_cache_timeout",
    "3600s",
    "How long cached client TLS sessions stay valid.",
)


# --- TLS library settings ----------------------------------------------------

tls_high_cipherlist = stringParameter(
    "tls_high_cipherlist",
    "aNULL:-aNULL:HIGH:@STRENGTH",
    "OpenSSL cipher list for grade high.",
)
tls_medium_cipherlist = stringParameter(
    "tls_medium_cipherlist",
    "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH",
    "OpenSSL cipher list for grade medium.",
)
tls_low_cipherlist = stringParameter(
    "tls_low_cipherlist",
    "aNULL:-aNULL:HIGH:MEDIUM:LOW:+RC4:@STRENGTH",
    "OpenSSL cipher list for grade low (ignored by OpenSSL 1.1 and later).",
)
tls_export_cipherlist = stringParameter(
    "tls_export_cipherlist",
    "aNULL:-aNULL:HIGH:MEDIUM:LOW:EXPORT:+RC4:@STRENGTH",
    "OpenSSL cipher list for grade export (ignored by OpenSSL 1.1 and later).",
)
tls_null_cipherlist = stringParameter(
    "tls_null_cipherlist",
    "eNULL:!aNULL",
    "OpenSSL cipher list for grade null (no encryption).",
)
tls_preempt_cipherlist = boolParameter(
    "tls_preempt_cipherlist",
    "no",
    "Let the server, not the client, choose the cipher.",
)
tls_ssl_options = listParameter(
    "tls_ssl_options",
    "",
    "Extra OpenSSL option names or a bit mask to set.",
)
tls_disable_workarounds = listParameter(
    "tls_disable_workarounds",
    "",
    "OpenSSL bug workarounds to turn off.",
)
tls_eecdh_auto_curves = listParameter(
    "tls_eecdh_auto_curves",
    "X25519 X448 prime256v1 secp521r1 secp384r1",
    "Elliptic curves offered for key exchange, in preference order.",
)
tls_eecdh_strong_curve = stringParameter(
    "tls_eecdh_strong_curve",
    "prime256v1",
    "Curve used at eecdh grade strong.",
)
tls_eecdh_ultra_curve = stringParameter(
    "tls_eecdh_ultra_curve",
    "secp384r1",
    "Curve used at eecdh grade ultra.",
)
tls_dane_digests = listParameter(
    "tls_dane_digests",
    "sha512 sha256",
    "Digest algorithms accepted in DANE TLSA records.",
)
tls_append_default_CA = boolParameter(
    "tls_append_default_CA",
    "no",
    "Also trust the system's default CA store.",
)
tls_config_file = stringParameter(
    "tls_config_file",
    "default",
    "OpenSSL configuration file; default uses OpenSSL's own.",
)
tls_config_name = stringParameter(
    "tls_config_name",
    "",
    "Application name looked up in the OpenSSL configuration file.",
)
tls_fast_shutdown_enable = boolParameter(
    "tls_fast_shutdown_enable",
    "yes",
    "Do not wait for the peer's close_notify.",
)
tls_legacy_public_key_fingerprints = boolParameter(
    "tls_legacy_public_key_fingerprints",
    "no",
    "Use the pre-2.9.5 public key fingerprint method.",
)
tls_wildcard_matches_multiple_labels = boolParameter(
    "tls_wildcard_matches_multiple_labels",
    "yes",
    "Let a certificate wildcard match more than one label.",
)
tls_server_sni_maps = mapParameter(
    "tls_server_sni_maps",
    "",
    "Certificates to use per requested SNI name.",
)
tls_session_ticket_cipher = stringParameter(
    "tls_session_ticket_cipher",
    "aes-256-cbc",
    "Cipher protecting session tickets; empty disables tickets.",
)
tls_random_source = stringParameter(
    "tls_random_source",
    "dev:/dev/urandom",
    "Source of entropy for the TLS PRNG.",
)
tls_random_bytes = intParameter(
    "tls_random_bytes",
    "32",
    "Bytes read from tls_random_source at a time.",
)
tls_daemon_random_bytes = intParameter(
    "tls_daemon_random_bytes",
    "32",
    "Bytes of entropy each process takes from the TLS manager.",
)
tls_random_exchange_name = stringParameter(
    "tls_random_exchange_name",
    "${data_directory}/prng_exch",
    "File used to carry PRNG state across restarts.",
)
tls_random_prng_update_period = timeParameter(
    "tls_random_prng_update_period",
    "3600s",
    "How often the PRNG state is saved.",
)
tls_random_reseed_period = timeParameter(
    "tls_random_reseed_period",
    "3600s",
    "Longest time between PRNG reseeds.",
)


bounce_size_limit = intParameter(
    "bounce_size_limit",
    "50000",
    "Largest original message returned whole in a non-delivery notification;"
    " larger ones come back as headers only.",
    minimum=1,
)


# --- mtaguard's own parameters ------------------------------------------------

mtaguard_queue_sync = stringParameter(
    "mtaguard_queue_sync",
    "fsync",
    "How a batch of queue commits reaches stable storage: fsync each file, or"
    " syncfs (one file-system flush per batch; faster, but it also flushes other"
    " programs' data on that file system).",
    choices=("fsync", "syncfs"),
    postfix=False,
)

mtaguard_sasl_password_file = stringParameter(
    "mtaguard_sasl_password_file",
    "",
    "Password file for SMTP AUTH (user:$scrypt$... lines, made with mtaguard-passwd);"
    " empty: AUTH is not offered.",
    postfix=False,
)

mtaguard_dns_servers = listParameter(
    "mtaguard_dns_servers",
    "",
    "DNS servers (address or [address]:port) that MX, address and DNSBL"
    " lookups ask; empty: those of /etc/resolv.conf.",
    postfix=False,
)

# --- Run-time behaviour of some values ----------------------------------------

registry.rawNames.update(RAW_PARAMETERS)
# Postfix computes mynetworks from mynetworks_style when it is not set; the
# style itself depends on compatibility_level.
registry.dynamicDefaults["mynetworks"] = lambda expand: _hostdefaults.mynetworksForStyle(
    expand("mynetworks_style")
)
registry.dynamicDependencies["mynetworks"] = ("mynetworks_style",)
