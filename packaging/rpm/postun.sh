# %postun ($1: 0 = erase, 1 = upgrade): restart after an upgrade. The spool
# (it may hold undelivered mail) and the users stay, as is the Fedora custom.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart postern.service >/dev/null 2>&1 || :
    fi
fi
exit 0
