require "fileinto";
if true {
    if header :contains "subject" "present" {
        fileinto "Inner";
        stop;
    }
    fileinto "NotReached";
}
fileinto "AlsoNot";
