#!/bin/bash
# STAND-IN for `portage-ima setup --apply` (deleted before landing).
set -e
mkdir -p /etc/keys /etc/ima
openssl ecparam -genkey -name prime256v1 -noout -out /etc/keys/IMA_signing_key.priv
chmod 600 /etc/keys/IMA_signing_key.priv
openssl req -new -x509 -key /etc/keys/IMA_signing_key.priv -outform DER -out /etc/keys/x509_ima.der \
	-days 3650 -subj "/CN=stand-in" -addext subjectKeyIdentifier=hash \
	-addext keyUsage=critical,digitalSignature -addext basicConstraints=critical,CA:FALSE
printf 'key = "/etc/keys/IMA_signing_key.priv"\ncert = "/etc/keys/x509_ima.der"\nhash = "sha256"\n' >/etc/portage/ima.toml
echo '[[ -r /usr/share/portage-ima/portage-ima.bashrc ]] && source /usr/share/portage-ima/portage-ima.bashrc' >>/etc/portage/bashrc
portage-ima policy --output /etc/ima/ima-policy
ln -s /etc/init.d/portage-ima /etc/runlevels/boot/portage-ima
portage-ima sign --all
portage-ima policy --check /etc/ima/ima-policy
echo "boots still to do: ima_appraise=log, then ima_appraise=enforce"
