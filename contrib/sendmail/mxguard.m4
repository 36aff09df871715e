divert(-1)
dnl mxguard for Sendmail. In /etc/mail/sendmail.mc, before the MAILER lines:
dnl
dnl     include(`/usr/share/doc/mxguard/contrib/sendmail/mxguard.m4')dnl
dnl
dnl then rebuild sendmail.cf (Debian: sendmailconfig) and restart Sendmail. To use another
dnl socket, define(`MXGUARD_SOCKET', `local:/path') before the include; it must match
dnl [milter] socket in /etc/mxguard/mxguard.ini, and no directory on its path may be world
dnl writable (Sendmail refuses such a socket as unsafe).
dnl
dnl F=T: if mxguard is unreachable, tempfail (4xx) instead of passing mail unfiltered.
dnl T=: send, read and end-of-message timeouts.
dnl
dnl The macros mxguard reads are *appended* to confMILTER_MACROS_* (to what an earlier line
dnl or another milter's file defined, else to Sendmail's defaults), never overwriting them:
dnl the queue id (i) at RCPT and end of message, which Sendmail does not send there by default.
define(`_MXGUARD_ADD', `ifdef(`$1', `define(`$1', defn(`$1')`, $3')', `define(`$1', `$2, $3')')')
_MXGUARD_ADD(`confMILTER_MACROS_ENVRCPT', `{rcpt_mailer}, {rcpt_host}, {rcpt_addr}', `i')
_MXGUARD_ADD(`confMILTER_MACROS_EOM', `{msg_id}', `i')
ifdef(`MXGUARD_SOCKET', `', `define(`MXGUARD_SOCKET', `local:/run/mxguard/mxguard.sock')')
divert(0)dnl
INPUT_MAIL_FILTER(`mxguard', `S='MXGUARD_SOCKET`, F=T, T=S:30s;R:1m;E:5m')dnl
dnl Name the submission daemon so mxguard can tell port 587 from port 25
dnl ([milter] submission_daemons = submission):
dnl DAEMON_OPTIONS(`Port=submission, Name=submission, M=Ea')dnl
