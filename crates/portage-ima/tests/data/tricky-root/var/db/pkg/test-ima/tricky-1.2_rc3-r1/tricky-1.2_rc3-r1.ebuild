# Written by tests/portage_playground: a portage-ima test package.
EAPI=8

DESCRIPTION="portage-ima test package tricky"
HOMEPAGE="https://example.invalid/portage-ima"
S="${WORKDIR}"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
RESTRICT="test"

src_install() {
	d="/usr/share/${PN}"
	dodir "${d}" /var/lib/${PN}
	printf 'arrow\n' > "${ED}${d}/a -> b" || die
	printf 'latin1\n' > "${ED}${d}/$(printf 'caf\351')" || die
	printf 'trail\n' > "${ED}${d}/trailing " || die
	printf 'lead\n' > "${ED}${d}/ lead" || die
	printf 'hexy\n' > "${ED}${d}/x ec4821ad3db39e619b360ee097ff8f99 12" || die
	: > "${ED}${d}/empty" || die
	ln -s "../target with space" "${ED}${d}/spacey-link" || die
	ln -s "a -> b" "${ED}${d}/link -> x" || die
	mkfifo "${ED}/var/lib/${PN}/fifo" || die
}
