/* test-ima/rollback (issue 25): a program whose older version, with its
 * valid signature, is copied back over the newer one. Appraisal accepts it;
 * Keylime with the digests the hook keeps does not. */
#include <stdio.h>

int main(void)
{
	printf("rollback ran\n");
	return 0;
}
