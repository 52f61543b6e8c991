# %post ($1: 1 = install, 2 = upgrade): spool, alternatives, service.
SPOOL=/var/spool/postern
spool_dir() {
    if [ -L "$1" ] || { [ -e "$1" ] && [ ! -d "$1" ]; }; then
        mv -f "$1" "$1.broken.$$"
    fi
    [ -d "$1" ] || mkdir "$1"
    chown -h "$3" "$1"
    chmod "$2" "$1"
}
spool_dir "$SPOOL"          0755 postern:postern
spool_dir "$SPOOL/maildrop" 1770 postern:postern-drop
spool_dir "$SPOOL/queue"    0700 postern:postern
spool_dir "$SPOOL/state"    0755 postern:postern
spool_dir "$SPOOL/tmp"      0700 postern:postern
spool_dir "$SPOOL/corrupt"  0700 postern:postern
spool_dir "$SPOOL/public"   0710 postern:postern-drop
if [ -L "$SPOOL/public/trigger" ] || { [ -e "$SPOOL/public/trigger" ] && [ ! -p "$SPOOL/public/trigger" ]; }; then
    rm -f "$SPOOL/public/trigger"
fi
[ -p "$SPOOL/public/trigger" ] || mkfifo -m 0620 "$SPOOL/public/trigger"
chown -h postern:postern-drop "$SPOOL/public/trigger"
chmod 0620 "$SPOOL/public/trigger"
[ -x /sbin/restorecon ] && /sbin/restorecon -R "$SPOOL" >/dev/null 2>&1

# The Fedora/RHEL MTA convention: /usr/sbin/sendmail and friends are
# alternatives of the "mta" group. cargo-generate-rpm cannot package
# symlinks, so the master's target is made here.
ln -sfn postern /usr/sbin/sendmail.postern
alternatives --install /usr/sbin/sendmail mta /usr/sbin/sendmail.postern 30 \
    --slave /usr/lib/sendmail mta-sendmail /usr/sbin/sendmail.postern \
    --slave /usr/bin/mailq mta-mailq /usr/sbin/postern \
    --slave /usr/bin/newaliases mta-newaliases /usr/sbin/postern \
    --slave /usr/share/man/man8/sendmail.8.gz mta-sendmailman /usr/share/man/man8/sendmail.postern.8.gz \
    --slave /usr/share/man/man1/mailq.1.gz mta-mailqman /usr/share/man/man1/mailq.postern.1.gz \
    --slave /usr/share/man/man1/newaliases.1.gz mta-newaliasesman /usr/share/man/man8/newaliases.postern.8.gz

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable --now postern.service >/dev/null 2>&1 || :
    fi
fi
exit 0
