#!/usr/bin/env bash
# `make deploy`: check every prerequisite, package (infra/package.sh), upload the code with
# `aws cloudformation package`, then create or update the stack with `aws cloudformation
# deploy`. Works with AWS CLI v1 and v2: the region is resolved once and passed to every call
# with --region (CLI v1 ignores AWS_REGION). See docs/deploying.md.
#
# Settings, from the environment (or `make deploy NAME=value`):
#   AWS_REGION / AWS_DEFAULT_REGION   the region (else the profile's); everything goes there
#   STAGE                   the deployment's name: the stack is minion-$STAGE (default dev)
#   STACK_NAME              overrides the stack name
#   ARTIFACT_BUCKET         S3 bucket for the code, in the stack's region; default
#                           minion-artifacts-<account>-<region>, created (private, encrypted,
#                           old uploads expiring) when missing
#   TOKENS_SECRET_ARN       an existing secret with the API tokens (default: the stack makes one)
#   ACCOUNTS_PARAMETER      SSM parameter with the account registry (default /minion/accounts);
#                           created with an empty registry when missing, else checked
#   RUNNER_ROLE_ARNS        runner roles the worker may assume, comma-separated
#   RUNNERS_IN_OWN_ACCOUNT  true: entries without role_arn act in this account
#   ALARM_TOPIC_ARN         SNS topic for the alarms
#   TICK_RESERVED_CONCURRENCY  concurrency reserved for the tick (template default 10; 0: none)
#   PARAMETERS              any other Name=value stack parameters, space-separated
#   SKIP_PACKAGE=1          deploy build/ as `make package` left it (no new build)
#   DRY_RUN=1               check nothing, print the commands that change something instead of
#                           running them (DRY_RUN_NEW_STACK=1: as for a first create)
# Parameters left unset keep their current value on an existing stack (their default on a new
# one).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-$root/.venv}"
stage="${STAGE:-dev}"
stack="${STACK_NAME:-minion-$stage}"
parameter="${ACCOUNTS_PARAMETER:-/minion/accounts}"
dry="${DRY_RUN:-}"
# CLI v2 pipes output through a pager; a script must never wait on one.
export AWS_PAGER=""

fail() { echo "deploy: $*" >&2; exit 2; }
run() {
  if [[ -n "$dry" ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

# --- prerequisites, cheapest first; each failure says what to do ----------------------------
[[ -x "$venv/bin/python" ]] || fail "no virtualenv at $venv: run \`make .venv/.installed\` first"
if [[ -z "$dry" ]]; then
  command -v aws >/dev/null || fail "the AWS CLI (aws, v1 or v2) is required: https://aws.amazon.com/cli/"
  cli="$(aws --version 2>&1 || true)"
  [[ "$cli" =~ aws-cli/([12])\. ]] || fail "unrecognised AWS CLI ($cli): v1 or v2 is required"
fi

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
if [[ -z "$region" && -z "$dry" ]]; then
  region="$(aws configure get region 2>/dev/null || true)"
fi
[[ -n "$region" ]] || fail "no region: set AWS_REGION (or AWS_DEFAULT_REGION, or the profile's region)"
[[ "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]] || fail "region '$region' is not a region name"
# The worker's role is named after the stack and region (runner roles trust it by name).
(( ${#stack} + 8 + ${#region} <= 64 )) \
  || fail "stack name '$stack' too long: its worker role '$stack-worker-$region' exceeds IAM's 64 characters"

if [[ -n "$dry" ]]; then
  account="<account>"
else
  account="$(aws sts get-caller-identity --region "$region" --query Account --output text 2>&1)" \
    || fail "no usable AWS credentials (aws sts get-caller-identity: ${account//$'\n'/ })"
fi

# The stack: new, updatable, or a failed first create that must go before the next try.
status=absent
if [[ -n "$dry" ]]; then
  [[ -n "${DRY_RUN_NEW_STACK:-}" ]] || status=UPDATE_COMPLETE
elif described="$(aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
                    --query 'Stacks[0].StackStatus' --output text 2>&1)"; then
  status="$described"
elif [[ "$described" != *"does not exist"* ]]; then
  fail "cannot read stack $stack: $described"
fi
case "$status" in
  absent|*_COMPLETE) ;;
  *_IN_PROGRESS) fail "stack $stack is $status: wait for it to finish, then deploy again" ;;
  *) fail "stack $stack is $status: see docs/deploying.md \"Recovering from a failed deploy\"" ;;
esac
if [[ "$status" == ROLLBACK_COMPLETE ]]; then
  # A first create that failed: CloudFormation deleted what it made (the table included,
  # RetainExceptOnCreate) and the empty stack cannot be updated, only deleted.
  echo "deploy: stack $stack is what is left of a failed first create (ROLLBACK_COMPLETE): deleting it"
  run aws cloudformation delete-stack --region "$region" --stack-name "$stack"
  run aws cloudformation wait stack-delete-complete --region "$region" --stack-name "$stack"
  status=absent
fi
if [[ "$status" == DELETE_COMPLETE ]]; then status=absent; fi

if [[ "$status" == absent && -z "${TOKENS_SECRET_ARN:-}" && -z "$dry" ]]; then
  # The stack creates the secret <stack>/tokens. One left scheduled for deletion by a failed
  # create would block the name for up to 30 days: it only held a generated token nobody used.
  if deleted="$(aws secretsmanager describe-secret --region "$region" --secret-id "$stack/tokens" \
                  --query DeletedDate --output text 2>/dev/null)"; then
    if [[ "$deleted" == None ]]; then
      fail "a secret named $stack/tokens already exists outside the stack: set TOKENS_SECRET_ARN to use it, or delete it"
    fi
    echo "deploy: removing the secret $stack/tokens a failed create scheduled for deletion"
    aws secretsmanager delete-secret --region "$region" --secret-id "$stack/tokens" \
      --force-delete-without-recovery >/dev/null
  fi
fi

reserve="${TICK_RESERVED_CONCURRENCY:-10}"
[[ "$reserve" =~ ^[0-9]+$ ]] || fail "TICK_RESERVED_CONCURRENCY must be a number, not '$reserve'"
if [[ "$status" == absent && -z "$dry" && "$reserve" -gt 0 ]]; then
  # Reserving concurrency for the tick must leave the account its 100 unreserved executions
  # (new accounts often have 10 in all).
  unreserved="$(aws lambda get-account-settings --region "$region" \
                  --query AccountLimit.UnreservedConcurrentExecutions --output text 2>&1)" \
    || fail "cannot read the account's Lambda concurrency: $unreserved"
  if (( unreserved - reserve < 100 )); then
    fail "the account has $unreserved unreserved Lambda concurrency in $region; reserving $reserve for the tick would leave less than the 100 Lambda requires. Ask for a quota increase (Service Quotas, \"Concurrent executions\"), or set TICK_RESERVED_CONCURRENCY=0"
  fi
fi

# The account registry: created (empty: no job can act anywhere yet) or checked.
if [[ -z "$dry" ]]; then
  if registry="$(aws ssm get-parameter --region "$region" --name "$parameter" \
                   --query 'Parameter.[Type,Value]' --output text 2>&1)"; then
    [[ "$registry" == String$'\t'* ]] \
      || fail "parameter $parameter must be of type String (the functions read it without decryption)"
    printf '%s' "${registry#String$'\t'}" | "$venv/bin/python" -c '
import sys
from chalicelib.accounts import Registry, RegistryError
try:
    Registry.from_document(sys.stdin.read())
except (RegistryError, ValueError) as error:
    print(f"deploy: parameter {sys.argv[1]}: {error}", file=sys.stderr)
    sys.exit(2)' "$parameter"
  elif [[ "$registry" == *ParameterNotFound* ]]; then
    echo "deploy: creating the account registry $parameter (empty: add accounts, docs/operations.md)"
    aws ssm put-parameter --region "$region" --name "$parameter" --type String \
      --value '{"accounts": {}}' >/dev/null
  else
    fail "cannot read the registry parameter $parameter: $registry"
  fi
fi

# The artifact bucket: in the stack's region (Lambda fetches its code from there).
bucket="${ARTIFACT_BUCKET:-minion-artifacts-$account-$region}"
bucket_region() {
  local where
  where="$(aws s3api get-bucket-location --region "$region" --bucket "$1" \
             --query LocationConstraint --output text)" || return 1
  case "$where" in None|null|'') echo us-east-1 ;; EU) echo eu-west-1 ;; *) echo "$where" ;; esac
}
create_bucket=""
if [[ -n "$dry" ]]; then
  [[ -n "${ARTIFACT_BUCKET:-}" ]] || create_bucket=1
elif where="$(bucket_region "$bucket" 2>/dev/null)"; then
  [[ "$where" == "$region" ]] \
    || fail "artifact bucket $bucket is in $where, the stack in $region: Lambda can only fetch code from its own region (use a bucket in $region)"
elif [[ -n "${ARTIFACT_BUCKET:-}" ]]; then
  fail "artifact bucket $bucket cannot be read (missing, or not yours): create it in $region, or leave ARTIFACT_BUCKET unset"
else
  create_bucket=1
fi
if [[ -n "$create_bucket" ]]; then
  if [[ "$region" == us-east-1 ]]; then
    run aws s3api create-bucket --region "$region" --bucket "$bucket"
  else
    run aws s3api create-bucket --region "$region" --bucket "$bucket" \
      --create-bucket-configuration "LocationConstraint=$region"
  fi
  run aws s3api put-public-access-block --region "$region" --bucket "$bucket" \
    --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
  run aws s3api put-bucket-encryption --region "$region" --bucket "$bucket" \
    --server-side-encryption-configuration \
    '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
  # Each deploy uploads a new code zip and template; the stack only needs the latest (and the
  # one before, to roll back to), so uploads older than 90 days go.
  run aws s3api put-bucket-lifecycle-configuration --region "$region" --bucket "$bucket" \
    --lifecycle-configuration \
    '{"Rules":[{"ID":"expire-old-uploads","Status":"Enabled","Filter":{"Prefix":""},"Expiration":{"Days":90},"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":1}}]}'
fi

# A stack rolls back to the code it runs now: keep that code's uploads younger than the
# bucket's expiry, however long ago they were made (a rollback cannot fetch expired code).
if [[ "$status" != absent && -z "$dry" ]]; then
  current="$(aws cloudformation get-template --region "$region" --stack-name "$stack" \
               --template-stage Original --query TemplateBody --output text 2>/dev/null || true)"
  for key in $(grep -oE "s3://$bucket/[A-Za-z0-9._/-]+" <<<"$current" | sort -u | cut -d/ -f4-); do
    aws s3api copy-object --region "$region" --bucket "$bucket" --key "$key" \
      --copy-source "$bucket/$key" --metadata-directive REPLACE >/dev/null \
      || echo "deploy: could not refresh s3://$bucket/$key (the current code); a rollback may not find it" >&2
  done
fi

# --- build, upload, deploy ---------------------------------------------------------------------
if [[ -z "$dry" && -z "${SKIP_PACKAGE:-}" ]]; then
  "$root/infra/package.sh"
fi
[[ -n "$dry" || -f build/sam.json ]] || fail "no build/sam.json: run \`make package\` (or leave SKIP_PACKAGE unset)"

overrides=("Stage=$stage")
[[ -n "${TOKENS_SECRET_ARN:-}" ]] && overrides+=("TokensSecretArn=$TOKENS_SECRET_ARN")
[[ -n "${ACCOUNTS_PARAMETER:-}" ]] && overrides+=("AccountsParameterName=$ACCOUNTS_PARAMETER")
[[ -n "${RUNNER_ROLE_ARNS:-}" ]] && overrides+=("RunnerRoleArns=$RUNNER_ROLE_ARNS")
[[ -n "${RUNNERS_IN_OWN_ACCOUNT:-}" ]] && overrides+=("RunnersInOwnAccount=$RUNNERS_IN_OWN_ACCOUNT")
[[ -n "${ALARM_TOPIC_ARN:-}" ]] && overrides+=("AlarmTopicArn=$ALARM_TOPIC_ARN")
[[ -n "${TICK_RESERVED_CONCURRENCY:-}" ]] && overrides+=("TickReservedConcurrency=$TICK_RESERVED_CONCURRENCY")
if [[ -n "${PARAMETERS:-}" ]]; then
  read -r -a extra <<<"$PARAMETERS"
  overrides+=("${extra[@]}")
fi

run aws cloudformation package --region "$region" --template-file build/sam.json \
  --s3-bucket "$bucket" --s3-prefix "$stack" --output-template-file build/packaged.yaml
deploy() {
  # The template is larger than CloudFormation accepts inline (51,200 bytes): it goes via S3.
  run aws cloudformation deploy --region "$region" --template-file build/packaged.yaml \
    --stack-name "$stack" --s3-bucket "$bucket" --s3-prefix "$stack" \
    --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND \
    --no-fail-on-empty-changeset --parameter-overrides "$@"
}
# The table's deletion protection is on, except during a first create: a failed create can
# then delete everything it made (RetainExceptOnCreate). PARAMETERS may still turn it off.
protection=(TableDeletionProtection=true)
[[ " ${PARAMETERS:-} " == *" TableDeletionProtection="* ]] && protection=()
if [[ "$status" == absent ]]; then
  deploy "${overrides[@]}" TableDeletionProtection=false
fi
deploy "${overrides[@]}" "${protection[@]}"
run aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
  --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table
