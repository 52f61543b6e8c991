# %pre: users and groups first, so the payload can carry root:postern-drop 2755.
getent group postern-drop >/dev/null || groupadd -r postern-drop
getent group postern >/dev/null || groupadd -r postern
getent passwd postern >/dev/null || \
    useradd -r -g postern -d /var/spool/postern -M -s /usr/sbin/nologin \
        -c "Postern mail relay" postern
exit 0
