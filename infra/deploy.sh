#!/usr/bin/env bash
# `make deploy`: package (infra/package.sh), upload the code with `aws cloudformation package`,
# then create or update the stack with `aws cloudformation deploy`. Needs the AWS CLI and
# credentials for the target account and region (the usual AWS_PROFILE / AWS_REGION / ...).
#
# Settings, from the environment (or `make deploy NAME=value`):
#   STAGE                   the deployment's name: the stack is minion-$STAGE (default dev)
#   STACK_NAME              overrides the stack name
#   ARTIFACT_BUCKET         S3 bucket for the code; default minion-artifacts-<account>-<region>,
#                           created (private, encrypted) when missing
#   TOKENS_SECRET_ARN       an existing secret with the API tokens (default: the stack makes one)
#   ACCOUNTS_PARAMETER      SSM parameter with the account registry (default /minion/accounts)
#   RUNNER_ROLE_ARNS        runner roles the worker may assume, comma-separated
#   RUNNERS_IN_OWN_ACCOUNT  true: entries without role_arn act in this account
#   ALARM_TOPIC_ARN         SNS topic for the alarms
#   PARAMETERS              any other Name=value stack parameters, space-separated
#   DRY_RUN=1               print the AWS commands instead of running them
# Parameters left unset keep their current value on an existing stack (their default on a new
# one). See docs/deploying.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
stage="${STAGE:-dev}"
stack="${STACK_NAME:-minion-$stage}"

run() {
  if [[ -n "${DRY_RUN:-}" ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

if [[ -z "${DRY_RUN:-}" ]]; then
  command -v aws >/dev/null || { echo "deploy: the AWS CLI (aws) is required" >&2; exit 2; }
  "$root/infra/package.sh"
fi

if [[ -n "${ARTIFACT_BUCKET:-}" ]]; then
  bucket="$ARTIFACT_BUCKET"
else
  if [[ -n "${DRY_RUN:-}" ]]; then
    account="<account>"; region="${AWS_REGION:-${AWS_DEFAULT_REGION:-<region>}}"
  else
    account="$(aws sts get-caller-identity --query Account --output text)"
    region="$(aws configure get region || true)"
    region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$region}}"
    [[ -n "$region" ]] || { echo "deploy: set AWS_REGION" >&2; exit 2; }
  fi
  bucket="minion-artifacts-$account-$region"
  if [[ -n "${DRY_RUN:-}" ]] || ! aws s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
    if [[ "$region" == "us-east-1" || -n "${DRY_RUN:-}" ]]; then
      run aws s3api create-bucket --bucket "$bucket"
    else
      run aws s3api create-bucket --bucket "$bucket" \
        --create-bucket-configuration "LocationConstraint=$region"
    fi
    run aws s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
      BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
    run aws s3api put-bucket-encryption --bucket "$bucket" --server-side-encryption-configuration \
      '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
  fi
fi

overrides=("Stage=$stage")
[[ -n "${TOKENS_SECRET_ARN:-}" ]] && overrides+=("TokensSecretArn=$TOKENS_SECRET_ARN")
[[ -n "${ACCOUNTS_PARAMETER:-}" ]] && overrides+=("AccountsParameterName=$ACCOUNTS_PARAMETER")
[[ -n "${RUNNER_ROLE_ARNS:-}" ]] && overrides+=("RunnerRoleArns=$RUNNER_ROLE_ARNS")
[[ -n "${RUNNERS_IN_OWN_ACCOUNT:-}" ]] && overrides+=("RunnersInOwnAccount=$RUNNERS_IN_OWN_ACCOUNT")
[[ -n "${ALARM_TOPIC_ARN:-}" ]] && overrides+=("AlarmTopicArn=$ALARM_TOPIC_ARN")
if [[ -n "${PARAMETERS:-}" ]]; then
  read -r -a extra <<<"$PARAMETERS"
  overrides+=("${extra[@]}")
fi

run aws cloudformation package --template-file build/sam.json --s3-bucket "$bucket" \
  --s3-prefix "$stack" --output-template-file build/packaged.yaml
# The template is larger than CloudFormation accepts inline (51,200 bytes): it goes via S3 too.
run aws cloudformation deploy --template-file build/packaged.yaml --stack-name "$stack" \
  --s3-bucket "$bucket" --s3-prefix "$stack" \
  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset \
  --parameter-overrides "${overrides[@]}"
run aws cloudformation describe-stacks --stack-name "$stack" \
  --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table
