require ["vacation", "fileinto"];
if header :contains "subject" "present" {
    fileinto "Gifts";
    vacation :handle "gifts" "Thanks, I will open it later.";
}
