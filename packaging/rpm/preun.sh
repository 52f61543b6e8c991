# %preun ($1: 0 = erase, 1 = upgrade): on erase, stop the service and leave
# the mta alternatives group.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl disable --now postern.service >/dev/null 2>&1 || :
    fi
    alternatives --remove mta /usr/sbin/sendmail.postern
    rm -f /usr/sbin/sendmail.postern
fi
exit 0
